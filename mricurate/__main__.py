from mricurate.cli import main

raise SystemExit(main())
