import sys
from pathlib import Path

# decoder_feeds and the op harness are shared with the model and op tests.
for folder in ("models", "ops"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / folder))
