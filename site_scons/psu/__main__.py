import sys

if sys.argv[1:2] == ["cc"]:
    # the compiler wrapper runs at every compile: skip the CLI's imports
    from .cc import main as wrapper
    sys.exit(wrapper(sys.argv[2:]))

from .cli import main

sys.exit(main())
