"""Text side of translation: the mBART SentencePiece tokenizer (`tokenizer`), SentencePiece training for
from-scratch models (`spm_training`) and HyperSign's vocabulary pruning (`pruning`)."""
from hypersign_jax.text.pruning import PruneMap  # noqa: F401
from hypersign_jax.text.tokenizer import GlossTokenizer, MBartTokenizer, encode_targets, shift_tokens_right  # noqa: F401
