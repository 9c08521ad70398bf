// Validates the form on every keystroke with the WASM module and shows each
// problem beside its field. No rule lives here: the module answers.
import init, { validateBookingRequest, normalizeEmail } from "../../bindings-wasm/pkg/web/callbook_wasm.js";

await init();
const form = document.getElementById("booking");
const status = document.getElementById("status");

function request() {
  const value = (name) => form.elements[name].value;
  const r = { retellCallId: value("retellCallId"), customerName: value("customerName") };
  if (value("customerEmail").trim()) r.customerEmail = value("customerEmail");
  if (value("serviceId").trim()) r.serviceId = Number(value("serviceId"));
  if (value("date") || value("time")) {
    r.date = value("date");
    r.time = value("time");
  }
  return r;
}

function check() {
  const problems = validateBookingRequest(request());
  for (const span of form.querySelectorAll(".problem")) {
    const mine = problems.filter((p) => p.field === span.dataset.field);
    span.textContent = mine.map((p) => p.message).join("; ");
    const input = form.elements[span.dataset.field];
    if (input) input.classList.toggle("bad", mine.length > 0);
  }
  const typed = form.elements.customerEmail.value;
  const email = normalizeEmail(typed);
  document.getElementById("emailPreview").textContent =
    typed.trim() === "" ? "" : email ? `will be saved as ${email}` : "not an address: kept as text, not used";
  status.textContent = problems.length === 0 ? "Ready to book." : `${problems.length} problem(s) to fix.`;
  status.className = problems.length === 0 ? "ok" : "";
  document.body.dataset.checked = String(Number(document.body.dataset.checked || 0) + 1);
}

form.addEventListener("input", check);
check();
