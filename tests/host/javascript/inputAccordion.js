// Test host: the header checkbox of an InputAccordion, after the webui's javascript/inputAccordion.js
// (v1.10.1). The accordion's value lives in a hidden gradio checkbox (`<id>-checkbox`); this puts a
// visible checkbox into the accordion's header and keeps the two in step. While "linked" (until the
// user clicks the header checkbox itself), opening the accordion checks it and closing unchecks it.
// The webui's `-extra` header slot and inputAccordionChecked() are left out.

function setupInputAccordion(accordion) {
    var header = accordion.querySelector(".label-wrap");
    var hiddenCheckbox = gradioApp().querySelector("#" + accordion.id + "-checkbox input");
    var visibleCheckbox = document.createElement("INPUT");
    var linked = true;

    function isOpen() {
        return header.classList.contains("open");
    }

    function pushToGradio() {
        if (linked && isOpen() !== visibleCheckbox.checked) header.click();
        hiddenCheckbox.checked = visibleCheckbox.checked;
        updateInput(hiddenCheckbox);
    }

    visibleCheckbox.type = "checkbox";
    visibleCheckbox.id = accordion.id + "-visible-checkbox";
    visibleCheckbox.className = hiddenCheckbox.className + " input-accordion-checkbox";
    visibleCheckbox.checked = isOpen();
    visibleCheckbox.addEventListener("click", function(event) {
        linked = false;
        event.stopPropagation(); // toggling the checkbox must not also toggle the accordion
    });
    visibleCheckbox.addEventListener("input", pushToGradio);
    var label = header.querySelector("span");
    label.insertBefore(visibleCheckbox, label.firstChild);

    new MutationObserver(function() {
        accordion.classList.toggle("input-accordion-open", isOpen());
        if (linked) {
            visibleCheckbox.checked = isOpen();
            pushToGradio();
        }
    }).observe(header, {attributes: true, attributeFilter: ["class"]});
}

onUiLoaded(function() {
    gradioApp().querySelectorAll(".input-accordion").forEach(setupInputAccordion);
});
