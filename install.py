"""Run by the webui at every start-up: SAG needs no packages beyond the webui's own, so it does nothing.

Whether this webui can run SAG at all (AUTOMATIC1111 1.6 or newer, not Forge, reForge or SD.Next) is
decided when the script loads (`unsupported_host` in scripts/self_attention_guidance.py), which says
so in one console line.
"""
