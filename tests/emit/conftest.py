import sys
from pathlib import Path

# decoder_feeds (shared with the model tests) lives in tests/models/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
