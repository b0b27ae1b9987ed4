from tinydqn.cli import main

raise SystemExit(main())
