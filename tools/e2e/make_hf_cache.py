"""Offline Hugging Face cache for openai/clip-vit-large-patch14, for the e2e test webuis: config and tokenizer only.

SD1 checkpoints load their text encoder through transformers'
CLIPTokenizer/CLIPTextModel("openai/clip-vit-large-patch14"), which needs that repository's config and tokenizer
files (the weights come from the checkpoint). The tokenizer is built from the BPE table bundled with open_clip (the
same vocabulary), so nothing is downloaded.
Usage: make_hf_cache.py HF_HOME   (run with the test webuis' venv)
"""
import gzip
import json
import sys
from pathlib import Path

import open_clip

hf_home = Path(sys.argv[1])
repo = hf_home / "hub" / "models--openai--clip-vit-large-patch14"
revision = "0" * 40
snap = repo / "snapshots" / revision
snap.mkdir(parents=True, exist_ok=True)
(repo / "refs").mkdir(exist_ok=True)
(repo / "refs" / "main").write_text(revision)
(hf_home / "hub" / "version.txt").write_text("1")  # cache-layout marker: no "cache needs migrating" notice


def byte_symbols():
    """GPT-2/CLIP byte-level BPE: each byte's printable stand-in character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
symbols = byte_symbols()
vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
vocab += ["<|startoftext|>", "<|endoftext|>"]
assert len(vocab) == 49408, len(vocab)
(snap / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
(snap / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
           "pad_token": "<|endoftext|>"}
(snap / "special_tokens_map.json").write_text(json.dumps(special))
(snap / "tokenizer_config.json").write_text(json.dumps({
    **special, "add_prefix_space": False, "errors": "replace", "do_lower_case": True, "model_max_length": 77,
    "tokenizer_class": "CLIPTokenizer", "name_or_path": "openai/clip-vit-large-patch14"}))
text = {"model_type": "clip_text_model", "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
        "num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu",
        "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05}
vision = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
          "num_hidden_layers": 24, "image_size": 224, "patch_size": 14, "projection_dim": 768,
          "hidden_act": "quick_gelu"}
(snap / "config.json").write_text(json.dumps({
    "model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": 768, "logit_scale_init_value": 2.6592,
    "text_config": text, "vision_config": vision}))

from transformers import CLIPTokenizer  # noqa: E402

ids = CLIPTokenizer.from_pretrained(str(snap))("a photo of a cat")["input_ids"]
assert ids == [49406, 320, 1125, 539, 320, 2368, 49407], ids
print("   tokenizer OK:", ids)
