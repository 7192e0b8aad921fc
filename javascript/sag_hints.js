// Hover hints for the Self-Attention Guidance controls, generated from the field table by
// `python -m sag_core.hints` (do not edit: tests/test_ui_contract.py checks it is current).
// The webui's javascript/hints.js keeps a global `titles` map from visible label text to tooltip
// text and applies it to new elements; this file only adds our labels to that map (no DOM work).
(function() {
    var sagHints = {
        "Self-Attention Guidance": "Switch Self-Attention Guidance on: one extra uncond U-Net pass per guided step.",
        "SAG scale": "How hard SAG pushes away from the blurred prediction. 0 switches the effect off; 0.5 to 1 is typical, with every sampler (DDIM CFG++ too). At CFG scale 1 and below SAG sharpens the prompt's prediction.",
        "SAG blur sigma": "Gaussian blur strength (in latent pixels) applied where self-attention is concentrated. 1 to 3 is typical.",
        "SAG mask threshold": "Tokens receiving more than this multiple of the average self-attention are blurred. 1 means above average.",
        "SAG start": "Fraction of the sampling pass at which SAG (and PAG, SEG) starts guiding.",
        "SAG end": "Fraction of the sampling pass after which SAG (and PAG, SEG) stops guiding.",
        "Show where SAG acted": "After the images, add one picture per image showing where SAG blurred, averaged over the guided steps, drawn over the result. The images themselves do not change.",
        "Perturbed-Attention Guidance": "Switch Perturbed-Attention Guidance on: one extra prompt-branch pass per guided step with the chosen layer's self-attention replaced by the identity, and the result pushed away from it.",
        "PAG scale": "How hard PAG pushes away from the prediction with identity self-attention; the paper uses 3 (with CFG) to 5 (without). 0 switches the effect off.",
        "Smoothed Energy Guidance": "Switch Smoothed Energy Guidance on: one extra prompt-branch pass per guided step with the chosen layer's queries blurred over the image, and the result pushed away from it.",
        "SEG scale": "How hard SEG pushes away from the prediction with blurred attention; the paper uses 3. 0 switches the effect off.",
        "SEG blur sigma": "Gaussian blur of the queries, in tokens of the chosen layer; 9999 means infinite (every token attends alike), the paper's default. Smaller values perturb less.",
        "Guided attention layer": "The U-Net block whose self-attention SAG reads and PAG and SEG perturb: the middle block (the papers' choice) or an output (up) or input (down) block, numbered as in the model.",
        "SAG smooth mask": "Upsample SAG's attention map to the latent bilinearly before the threshold, so the blurred region follows smooth outlines instead of the paper's nearest-neighbour token squares."
    };
    window.titles = Object.assign(window.titles || {}, sagHints);
})();
