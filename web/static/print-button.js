// The Print button of a printable page (the after-visit summary): the page's own print
// stylesheet (app.css, @media print) leaves out the navigation and the buttons.
for (const button of document.querySelectorAll("[data-print]")) {
  button.addEventListener("click", () => window.print());
}
