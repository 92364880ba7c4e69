from proxy_shim.cli import main

raise SystemExit(main())
