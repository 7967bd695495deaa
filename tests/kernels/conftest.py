import sys
from pathlib import Path

# decoder_feeds is shared with the model tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
