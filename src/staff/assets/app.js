// bouncegate staff pages: the brand picker's search-as-you-type. The page works without this
// script; with it, a search field above the brands hides the ones that do not match. Served from
// /staff/app.js (the pages' CSP allows scripts from this origin only; nothing inline).
"use strict";
(function () {
  function setUp(picker) {
    var box = picker.querySelector(".brand-filter");
    var input = box && box.querySelector("input");
    var count = box && box.querySelector("[role=status]");
    if (!input || !count) return;
    var companies = Array.prototype.slice.call(picker.querySelectorAll("[data-company]"));
    var total = picker.querySelectorAll("label[data-scope]").length;
    box.hidden = false;

    function words(n) {
      return input.getAttribute("data-count").replace("{n}", n).replace("{m}", total);
    }

    function apply() {
      var query = input.value.trim().toLowerCase();
      var shown = 0;
      companies.forEach(function (company) {
        var companyLabel = company.querySelector("label[data-company-scope]");
        var companyMatches = query === "" ||
          companyLabel.getAttribute("data-search").indexOf(query) !== -1;
        var any = companyMatches || companyLabel.querySelector("input").checked;
        company.querySelectorAll("label[data-scope]").forEach(function (label) {
          // A brand stays visible when it matches, when its company matches, or when it is
          // already chosen (what is ticked never disappears from view).
          var visible = companyMatches ||
            label.getAttribute("data-search").indexOf(query) !== -1 ||
            label.querySelector("input").checked;
          label.hidden = !visible;
          if (visible) { shown += 1; any = true; }
        });
        company.hidden = !any;
      });
      count.textContent = query === "" ? "" : words(shown);
      return shown;
    }

    input.addEventListener("input", apply);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        // Enter in the search field never sends the form; with exactly one brand left it
        // ticks that brand.
        event.preventDefault();
        var visible = picker.querySelectorAll("label[data-scope]:not([hidden]) input:not(:checked)");
        if (input.value.trim() !== "" && visible.length === 1) {
          visible[0].checked = true;
          input.value = "";
          apply();
        }
      } else if (event.key === "Escape" && input.value !== "") {
        event.preventDefault();
        input.value = "";
        apply();
      }
    });
    apply();
  }

  document.querySelectorAll("[data-brand-picker]").forEach(setUp);
})();
