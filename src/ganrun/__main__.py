from ganrun.cli import main

raise SystemExit(main())
