from bounced.cli import main

raise SystemExit(main())
