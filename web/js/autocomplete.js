// AnimeKit tag autocomplete for ComfyUI's multiline text boxes (CLIPTextEncode's, AnimeKit's, others).
// Suggestions come from the pack's route (GET /animekit/autocomplete), which answers from the
// pure core's index (prompting/autocomplete): nothing is downloaded, nothing loaded by hand.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const SETTING = {
  enabled: "AnimeKit.Autocomplete.Enabled",
  limit: "AnimeKit.Autocomplete.Limit",
  underscores: "AnimeKit.Autocomplete.Underscores",
  widgets: "AnimeKit.Autocomplete.Widgets",
  profile: "AnimeKit.Autocomplete.Profile",
};
const WIDGETS_ALL = "All text boxes";
const WIDGETS_ANIMEKIT = "AnimeKit nodes only";
const NO_PROFILE = "none";
const MIN_CHARS = 2;
const DEBOUNCE_MS = 60;
const BUILDING_RETRY_MS = 700;
// Where a tag ends: a separator, or a bracket that is not escaped (weights stay where they are).
const BOUNDARY = new Set([",", "\n", "|", "{", "}", "(", ")", "[", "]"]);

function setting(id) {
  return app.extensionManager?.setting?.get(id) ?? app.ui?.settings?.getSettingValue(id);
}

async function profileIds() {
  // The ids the nodes' `profile` combo offers, from the prompt builder's definition.
  try {
    const response = await api.fetchApi("/object_info/AnimeKitPromptBuilder");
    const info = await response.json();
    const spec = info?.AnimeKitPromptBuilder?.input?.required?.profile;
    const options = Array.isArray(spec?.[0]) ? spec[0] : spec?.[1]?.options;
    if (Array.isArray(options) && options.length) return options;
  } catch (error) {
    console.warn("AnimeKit autocomplete: no profile list", error);
  }
  return [];
}

function loadStyles() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("./autocomplete.css", import.meta.url).href;
  document.head.appendChild(link);
}

// The word being typed: from the last boundary before the caret to the caret.
export function currentToken(text, caret) {
  let start = caret;
  while (start > 0) {
    const ch = text[start - 1];
    if (BOUNDARY.has(ch) && !(text[start - 2] === "\\" && (ch === "(" || ch === ")"))) break;
    start -= 1;
  }
  while (start < caret && /\s/.test(text[start])) start += 1;
  return { start, end: caret, text: text.slice(start, caret) };
}

function nodeOf(textarea) {
  for (const node of app.graph?.nodes ?? []) {
    if ((node.widgets ?? []).some((w) => w.inputEl === textarea || w.element === textarea)) return node;
  }
  return null;
}

function profileFor(node) {
  const own = node?.widgets?.find((w) => w.name === "profile");
  if (own && typeof own.value === "string" && own.value) return own.value;
  return setting(SETTING.profile) || NO_PROFILE;
}

function formatCount(count) {
  if (count == null) return "";
  if (count >= 1e6) return `${(count / 1e6).toFixed(1)}M`;
  if (count >= 1e3) return `${(count / 1e3).toFixed(count >= 1e4 ? 0 : 1)}k`;
  return String(count);
}

// Where the caret is on screen: a hidden copy of the textarea laid out the same way.
function caretPosition(textarea, index) {
  const mirror = document.createElement("div");
  const style = getComputedStyle(textarea);
  for (const name of ["boxSizing", "width", "fontFamily", "fontSize", "fontWeight", "lineHeight", "letterSpacing",
    "paddingTop", "paddingLeft", "paddingRight", "borderTopWidth", "borderLeftWidth", "whiteSpace", "wordWrap", "tabSize"]) {
    mirror.style[name] = style[name];
  }
  Object.assign(mirror.style, { position: "absolute", visibility: "hidden", whiteSpace: "pre-wrap", overflowWrap: "break-word", top: "0", left: "-9999px" });
  mirror.textContent = textarea.value.slice(0, index);
  const marker = document.createElement("span");
  marker.textContent = "\u200b";
  mirror.appendChild(marker);
  document.body.appendChild(mirror);
  const box = textarea.getBoundingClientRect();
  // The text box may be drawn scaled with the canvas.
  const scale = textarea.offsetWidth ? box.width / textarea.offsetWidth : 1;
  const x = box.left + (marker.offsetLeft - textarea.scrollLeft) * scale;
  const y = box.top + (marker.offsetTop + marker.offsetHeight - textarea.scrollTop) * scale;
  mirror.remove();
  return { x: Math.min(x, box.right), y: Math.min(y, box.bottom) };
}

class Popup {
  constructor() {
    this.element = document.createElement("div");
    this.element.className = "animekit-autocomplete";
    this.element.setAttribute("role", "listbox");
    this.element.hidden = true;
    document.body.appendChild(this.element);
    this.items = [];
    this.selected = 0;
    this.onPick = null;
  }

  get open() {
    return !this.element.hidden;
  }

  show(suggestions, at, profile) {
    this.items = suggestions;
    this.selected = 0;
    this.element.replaceChildren(...suggestions.map((s, i) => this.row(s, i, profile)));
    this.element.style.left = `${Math.round(at.x)}px`;
    this.element.style.top = `${Math.round(at.y + 2)}px`;
    this.element.hidden = false;
    this.highlight();
  }

  row(s, i, profile) {
    const row = document.createElement("div");
    row.className = `animekit-ac-row animekit-ac-cat-${s.category}` + (s.unused ? " animekit-ac-unused" : "") + (s.family ? " animekit-ac-family" : "");
    row.setAttribute("role", "option");
    row.dataset.index = String(i);
    const name = document.createElement("span");
    name.className = "animekit-ac-name";
    name.textContent = s.alias ? `${s.alias} \u2192 ${s.tag}` : s.tag;
    row.appendChild(name);
    if (s.series) {
      const series = document.createElement("span");
      series.className = "animekit-ac-series";
      series.textContent = s.series;
      row.appendChild(series);
    }
    const meta = document.createElement("span");
    meta.className = "animekit-ac-meta";
    meta.textContent = s.unused ? "other model" : [s.category, formatCount(s.count)].filter(Boolean).join(" \u00b7 ");
    row.appendChild(meta);
    row.title = s.unused ? `${s.tag}: not a tag ${profile} was trained with` : `inserts: ${s.insert}`;
    row.addEventListener("mousedown", (event) => {
      event.preventDefault(); // keep the text box focused
      event.stopPropagation();
      this.selected = i;
      this.onPick?.(this.items[i]);
    });
    row.addEventListener("mousemove", () => {
      if (this.selected !== i) {
        this.selected = i;
        this.highlight();
      }
    });
    return row;
  }

  move(step) {
    if (!this.items.length) return;
    this.selected = (this.selected + step + this.items.length) % this.items.length;
    this.highlight();
  }

  highlight() {
    [...this.element.children].forEach((row, i) => {
      row.classList.toggle("animekit-ac-selected", i === this.selected);
      row.setAttribute("aria-selected", String(i === this.selected));
      if (i === this.selected) row.scrollIntoView({ block: "nearest" });
    });
  }

  hide() {
    this.element.hidden = true;
    this.items = [];
  }
}

class Autocomplete {
  constructor() {
    this.popup = new Popup();
    this.popup.onPick = (s) => this.insert(s);
    this.target = null;
    this.token = null;
    this.timer = null;
    this.sequence = 0;
    this.skipNextInput = false;
    document.addEventListener("input", (e) => this.onInput(e), true);
    window.addEventListener("keydown", (e) => this.onKeyDown(e), true);
    document.addEventListener("focusout", (e) => { if (e.target === this.target) this.close(); }, true);
    document.addEventListener("wheel", (e) => { if (!this.popup.element.contains(e.target)) this.close(); }, true);
  }

  applies(textarea) {
    if (!(textarea instanceof HTMLTextAreaElement) || !textarea.classList.contains("comfy-multiline-input")) return null;
    if (!setting(SETTING.enabled)) return null;
    const node = nodeOf(textarea);
    if (setting(SETTING.widgets) === WIDGETS_ANIMEKIT && !node?.type?.startsWith("AnimeKit")) return null;
    return { node };
  }

  onInput(event) {
    const scope = this.applies(event.target);
    if (!scope) return;
    if (this.skipNextInput) {
      this.skipNextInput = false;
      return;
    }
    const textarea = event.target;
    const token = currentToken(textarea.value, textarea.selectionStart);
    if (token.text.trim().length < MIN_CHARS || textarea.selectionStart !== textarea.selectionEnd) {
      this.close();
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.query(textarea, token, profileFor(scope.node)), DEBOUNCE_MS);
  }

  async query(textarea, token, profile) {
    const sequence = ++this.sequence;
    const params = new URLSearchParams({
      q: token.text,
      profile,
      limit: String(setting(SETTING.limit) ?? 20),
      underscores: setting(SETTING.underscores) ? "1" : "0",
    });
    let data;
    try {
      const response = await api.fetchApi(`/animekit/autocomplete?${params}`);
      data = await response.json();
      if (!response.ok) throw new Error(data?.error ?? response.statusText);
    } catch (error) {
      console.warn("AnimeKit autocomplete:", error);
      return;
    }
    if (sequence !== this.sequence || document.activeElement !== textarea) return; // typed on since
    if (data.building) { // the server is still building its tag index (first use): ask again
      this.timer = setTimeout(() => this.query(textarea, token, profile), BUILDING_RETRY_MS);
      return;
    }
    if (!data.suggestions.length) {
      this.close();
      return;
    }
    this.target = textarea;
    this.token = token;
    this.popup.show(data.suggestions, caretPosition(textarea, token.start), profile);
  }

  onKeyDown(event) {
    if (!this.popup.open || event.target !== this.target) return;
    const keys = { ArrowDown: () => this.popup.move(1), ArrowUp: () => this.popup.move(-1),
      Tab: () => this.insert(this.popup.items[this.popup.selected]),
      Enter: () => this.insert(this.popup.items[this.popup.selected]), Escape: () => this.close() };
    const action = keys[event.key];
    if (!action || event.ctrlKey || event.metaKey || event.altKey || (event.shiftKey && event.key !== "Tab")) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    action();
  }

  insert(suggestion) {
    const textarea = this.target;
    const token = this.token;
    if (!textarea || !token || !suggestion) return this.close();
    const after = textarea.value.slice(token.end);
    const lineRest = after.split("\n", 1)[0];
    const text = suggestion.insert + (lineRest.trim() === "" ? ", " : "");
    textarea.focus();
    textarea.setSelectionRange(token.start, token.end);
    this.skipNextInput = true;
    // insertText keeps the browser's undo history; setRangeText where it is unavailable.
    if (!document.execCommand?.("insertText", false, text)) {
      textarea.setRangeText(text, token.start, token.end, "end");
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
    }
    this.skipNextInput = false;
    this.close();
  }

  close() {
    clearTimeout(this.timer);
    this.sequence += 1;
    this.popup.hide();
    this.target = null;
    this.token = null;
  }
}

const profiles = await profileIds();

app.registerExtension({
  name: "AnimeKit.TagAutocomplete",
  settings: [
    { id: SETTING.enabled, category: ["AnimeKit", "Tag autocomplete", "Enabled"], name: "Tag autocomplete in text boxes",
      type: "boolean", defaultValue: true },
    { id: SETTING.limit, category: ["AnimeKit", "Tag autocomplete", "Limit"], name: "Number of suggestions",
      type: "slider", attrs: { min: 5, max: 50, step: 1 }, defaultValue: 20 },
    { id: SETTING.underscores, category: ["AnimeKit", "Tag autocomplete", "Underscores"],
      name: "Insert underscores instead of spaces (ganyu_\\(genshin_impact\\))", type: "boolean", defaultValue: false },
    { id: SETTING.widgets, category: ["AnimeKit", "Tag autocomplete", "Widgets"], name: "Autocomplete in",
      type: "combo", options: [WIDGETS_ALL, WIDGETS_ANIMEKIT], defaultValue: WIDGETS_ALL },
    { id: SETTING.profile, category: ["AnimeKit", "Tag autocomplete", "Profile"],
      name: "Model family for text boxes without an AnimeKit profile (its tags first, others' marked)",
      type: "combo", options: [NO_PROFILE, ...profiles], defaultValue: NO_PROFILE },
  ],
  async setup() {
    loadStyles();
    window.animekitAutocomplete = new Autocomplete();
    if (setting(SETTING.enabled)) {
      api.fetchApi("/animekit/autocomplete?q=").catch(() => {}); // builds the index now, not at the first keystroke
    }
  },
});
