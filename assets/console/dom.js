// Small DOM helpers of the console's pages.

/** An element with attributes (`class`, `text`, others as given; null/false left out) and children. */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

/**
 * Makes `parent`'s children equal to `next` (elements with a key, `keyOf`) while keeping every
 * element whose key and content did not change, and, within a changed one of the same shape,
 * every child that did not change: a refresh every two seconds must not take the keyboard focus
 * away from a link or button the reader is on.
 */
export function patch(parent, next, keyOf) {
  const old = new Map([...parent.children].map((c) => [keyOf(c), c]));
  const want = next.map((n) => {
    const o = old.get(keyOf(n));
    if (!o) return n;
    if (o.outerHTML === n.outerHTML) return o;
    const fresh = [...n.children];
    if (o.tagName !== n.tagName || o.children.length !== fresh.length) return n;
    for (const a of [...o.attributes]) if (!n.hasAttribute(a.name)) o.removeAttribute(a.name);
    for (const a of [...n.attributes]) if (o.getAttribute(a.name) !== a.value) o.setAttribute(a.name, a.value);
    [...o.children].forEach((c, i) => {
      if (c.outerHTML !== fresh[i].outerHTML) c.replaceWith(fresh[i]);
    });
    return o;
  });
  const keep = new Set(want);
  for (const c of [...parent.children]) if (!keep.has(c)) c.remove();
  want.forEach((n, i) => {
    if (parent.children[i] !== n) parent.insertBefore(n, parent.children[i] ?? null);
  });
}
