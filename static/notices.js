// Messages for the person watching: refused requests (errors), the server's `notice` events,
// and the gap notice when the page fell behind the server's ring and events were dropped.
//
// Never alert(): a message is a dismissable line in the page (role="alert" for errors, so
// screen readers announce it), and the page keeps working underneath.

import { el } from "./util.js";

// Messages kept on screen; older ones are dropped (they are advice, not a log).
const MAX_MESSAGES = 5;

export class Notices {
  constructor(root) {
    this.list = root.querySelector("#messages");
    this.gap = root.querySelector("#gap-notice");
    this.gapText = root.querySelector("#gap-text");
    root.querySelector("#gap-dismiss").addEventListener("click", () => {
      this.gap.hidden = true;
    });
  }

  /** A refused request or a failure on the page's side. */
  error(text) {
    this.add("error", text);
  }

  /** A `notice` event from the server (level: info, warning, error). */
  notice(level, text) {
    this.add(level === "error" || level === "warning" ? level : "info", text);
  }

  add(level, text) {
    const dismiss = el(
      "button",
      { type: "button", class: "dismiss", "aria-label": "Dismiss this message" },
      "×",
    );
    const item = el(
      "li",
      {
        class: `message ${level}`,
        role: level === "error" ? "alert" : "status",
        dataset: { testid: level === "error" ? "error-message" : "notice-message" },
      },
      el("span", { class: "text" }, text),
      dismiss,
    );
    dismiss.addEventListener("click", () => item.remove());
    this.list.append(item);
    while (this.list.childElementCount > MAX_MESSAGES) this.list.firstElementChild.remove();
  }

  /** Events were dropped: *missed* now, *total* since the page loaded. */
  showGap(missed, total) {
    this.gapText.textContent =
      `Missed ${missed.toLocaleString("en")} events: the page fell behind the server's ` +
      `buffer and it moved on (${total.toLocaleString("en")} missed since the page loaded). ` +
      "The timeline and console have a hole there; everything after it is complete.";
    this.gap.dataset.missed = String(total);
    this.gap.hidden = false;
  }

  reset() {
    this.list.replaceChildren();
    this.gap.hidden = true;
  }
}
