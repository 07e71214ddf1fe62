"""The report tests reuse the loopback DNS server and the DSN maker of the other suites."""

from tests.ops.dns.conftest import dns_server  # noqa: F401  (fixture)
from tests.ops.rules.conftest import dsn_file  # noqa: F401  (fixture)
