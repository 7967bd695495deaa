from onnx2sql.cli import main

raise SystemExit(main())
