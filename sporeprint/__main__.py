from sporeprint.cli import main

raise SystemExit(main())
