from budgetd.cli import main

raise SystemExit(main())
