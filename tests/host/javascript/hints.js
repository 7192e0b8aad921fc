// Test host: hover hints, after the webui's javascript/hints.js (v1.10.1).
// `titles` maps an element's visible text to its tooltip; extension scripts loaded after this
// one add their own entries. New elements get a `title` once the page has been quiet for a
// moment, and never lose one they already have. The webui's own entries, localization and
// dropdown handling are left out; the one entry below is the host's, for the Generate button.

var titles = {
    "Generate": "Run the job with the settings above (test host)"
};

var tooltipPending = new Set();
var tooltipTimer = null;

function updateTooltip(element) {
    if (element.title) return;
    var tooltip = titles[element.textContent] || (element.value && titles[element.value]);
    if (tooltip) element.title = tooltip;
}

function isTooltipCandidate(node) {
    return ["SPAN", "BUTTON", "P", "INPUT"].includes(node.tagName) ||
        (node.tagName === "LI" && node.classList.contains("item"));
}

onUiUpdate(function(records) {
    for (var record of records) {
        for (var node of record.addedNodes) {
            if (node.nodeType !== Node.ELEMENT_NODE || node.classList.contains("hide")) continue;
            if (!node.title && isTooltipCandidate(node)) tooltipPending.add(node);
            node.querySelectorAll("span, button, p").forEach(function(child) {
                tooltipPending.add(child);
            });
        }
    }
    if (tooltipPending.size) {
        clearTimeout(tooltipTimer);
        tooltipTimer = setTimeout(function() {
            tooltipPending.forEach(updateTooltip);
            tooltipPending.clear();
        }, 1000);
    }
});
