// Test host: the page hooks that webui scripts rely on, after the webui's script.js and
// javascript/ui.js (v1.10.1), reduced to what hints.js and inputAccordion.js here use.
// Written for these tests; the webui's tab tracking, keyboard shortcuts and options are left out.

function gradioApp() {
    var app = document.querySelector("gradio-app");
    if (!app) return document;
    return app.shadowRoot || app;
}

var uiUpdateCallbacks = [];
var uiLoadedCallbacks = [];
var uiLoadedDone = false;

// Called with the MutationRecords of every change under the gradio app.
function onUiUpdate(callback) {
    uiUpdateCallbacks.push(callback);
}

// Called once, when the txt2img prompt box has been rendered (the webui's "UI loaded" signal).
function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
}

function runUiCallbacks(callbacks, arg) {
    for (var callback of callbacks) {
        try {
            callback(arg);
        } catch (error) {
            console.error("test host: UI callback failed:", error);
        }
    }
}

// Tell gradio that a control changed from script, as a user's typing would.
function updateInput(target) {
    var event = new Event("input", {bubbles: true});
    Object.defineProperty(event, "target", {value: target});
    target.dispatchEvent(event);
}

document.addEventListener("DOMContentLoaded", function() {
    new MutationObserver(function(records) {
        if (!uiLoadedDone && gradioApp().querySelector("#txt2img_prompt")) {
            uiLoadedDone = true;
            runUiCallbacks(uiLoadedCallbacks);
        }
        runUiCallbacks(uiUpdateCallbacks, records);
    }).observe(gradioApp(), {childList: true, subtree: true});
});
