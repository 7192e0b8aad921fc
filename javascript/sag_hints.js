// Hover hints for the Self-Attention Guidance controls.
// The webui's javascript/hints.js keeps a global `titles` map from visible label text to tooltip
// text and applies it to new elements; this file only adds our labels to that map (no DOM work).
// Keep in step with the field table in sag_core/params.py (tests/test_ui_contract.py checks it).
(function() {
    var sagHints = {
        "Self-Attention Guidance": "Switch Self-Attention Guidance on: one extra uncond U-Net pass per guided step.",
        "SAG scale": "How hard SAG pushes away from the blurred prediction. 0 switches the effect off; 0.5 to 1 is typical, with every sampler (DDIM CFG++ too). At CFG scale 1 and below SAG sharpens the prompt's prediction.",
        "SAG blur sigma": "Gaussian blur strength (in latent pixels) applied where self-attention is concentrated. 1 to 3 is typical.",
        "SAG mask threshold": "Tokens receiving more than this multiple of the average self-attention are blurred. 1 means above average.",
        "SAG start": "Fraction of the sampling pass at which SAG starts guiding.",
        "SAG end": "Fraction of the sampling pass after which SAG stops guiding.",
        "Show where SAG acted": "After the images, add one picture per image showing where SAG blurred, averaged over the guided steps, drawn over the result. The images themselves do not change."
    };
    window.titles = Object.assign(window.titles || {}, sagHints);
})();
