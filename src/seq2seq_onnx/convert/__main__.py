"""`python -m seq2seq_onnx.convert --model_id ...`: the old Transformers.js `scripts/convert.py` command line."""

import sys

from ..cli import legacy_main

sys.exit(legacy_main())
