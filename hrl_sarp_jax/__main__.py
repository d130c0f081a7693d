from hrl_sarp_jax.cli import main

raise SystemExit(main())
