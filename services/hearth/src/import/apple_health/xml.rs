//! Reading an export's XML as a stream of small element trees, one per
//! child of `<HealthData>`, in constant memory.
//!
//! The document type declaration is skipped unread: it is never validated
//! or trusted (the one in export version 12 is malformed), and any entity
//! declaration in it is refused, so no entity is ever resolved.

use std::borrow::Cow;
use std::io::{BufRead, Cursor, Read};
use std::ops::Range;

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde::{Deserialize, Serialize};

use super::ImportError;

/// How far into a file the prologue (XML declaration and DTD) may reach.
const MAX_PROLOGUE: usize = 1 << 20;
/// The largest one element (with its children) may be, counting its
/// names and attribute values: a workout with a long inline route is a few
/// megabytes.
const MAX_ELEMENT_BYTES: usize = 64 << 20;
/// How deep elements may nest below the root: exports nest three deep
/// (a workout's route and its file). A tree is walked recursively, so a
/// deeper one could overflow the stack and stop the server.
const MAX_DEPTH: usize = 16;

/// One element with its attributes and children.
///
/// Its name, attribute names and values, and text are held in one buffer,
/// mostly a copy of the start tag as written: an export is millions of
/// small elements, and a buffer for each name and value (filled, kept,
/// wiped when freed) costs more than reading them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Element {
    buf: String,
    name: Span,
    attrs: Vec<(Span, Span)>,
    pub children: Vec<Element>,
    /// Text directly inside (GPX `ele` and `time`), trimmed.
    text: Span,
}

/// Where in an element's buffer a name, value or text is.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Span {
    start: u32,
    end: u32,
}

impl From<Range<usize>> for Span {
    /// Within the limit on an element's bytes, so within 32 bits.
    fn from(range: Range<usize>) -> Span {
        Span {
            start: range.start as u32,
            end: range.end as u32,
        }
    }
}

impl Element {
    /// An element from its parts.
    pub fn new(name: &str, attrs: &[(&str, &str)], children: Vec<Element>, text: &str) -> Element {
        let mut el = Element::default();
        el.name = el.push(name);
        for (key, value) in attrs {
            let pair = (el.push(key), el.push(value));
            el.attrs.push(pair);
        }
        el.text = el.push(text);
        el.children = children;
        el
    }

    /// Appends `part` to the buffer.
    fn push(&mut self, part: &str) -> Span {
        let start = self.buf.len();
        self.buf.push_str(part);
        Span::from(start..self.buf.len())
    }

    fn get(&self, span: Span) -> &str {
        &self.buf[span.start as usize..span.end as usize]
    }

    pub fn name(&self) -> &str {
        self.get(self.name)
    }

    pub fn text(&self) -> &str {
        self.get(self.text)
    }

    /// The attributes, in the order written.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|&(k, v)| (self.get(k), self.get(v)))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        // Names of a length mostly differ in their first byte: comparing
        // it first spares most whole comparisons (a record is looked up
        // by name a dozen times).
        let (len, first) = (name.len(), name.as_bytes().first().copied());
        let bytes = self.buf.as_bytes();
        self.attrs
            .iter()
            .find(|(k, _)| {
                (k.end - k.start) as usize == len
                    && bytes.get(k.start as usize).copied() == first
                    && self.get(*k) == name
            })
            .map(|&(_, v)| self.get(v))
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name() == name)
    }

    /// About what the element and its children hold, counted as the
    /// reader counts them against its limit on one element.
    pub fn bytes(&self) -> usize {
        size_of(self) + self.text().len() + self.children.iter().map(Element::bytes).sum::<usize>()
    }
}

/// Elements are equal when their names, attributes, text and children
/// are, wherever their buffers hold them.
impl PartialEq for Element {
    fn eq(&self, other: &Element) -> bool {
        self.name() == other.name()
            && self.attrs().eq(other.attrs())
            && self.text() == other.text()
            && self.children == other.children
    }
}

/// Whether the start of a file is an Apple Health export (`HealthData`),
/// whatever the file is called.
pub fn is_export(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head);
    head.contains("<!DOCTYPE HealthData") || head.contains("<HealthData")
}

/// Checks the start of an export (at least its first mebibyte, or all of
/// it): an export, with no entity declarations.
pub fn check_head(head: &[u8]) -> Result<(), ImportError> {
    if !is_export(head) {
        return Err(ImportError::Refused(
            "no <HealthData> element near the start: not an Apple Health export".into(),
        ));
    }
    prologue_end(head).map(|_| ())
}

/// How many bytes [`check_head`] wants.
pub const HEAD_BYTES: u64 = MAX_PROLOGUE as u64;

/// Where the document proper starts, past the XML declaration and the DTD.
/// Refuses entity declarations.
fn prologue_end(head: &[u8]) -> Result<usize, ImportError> {
    let text = String::from_utf8_lossy(head);
    let Some(doctype) = text.find("<!DOCTYPE") else {
        return match text.find("<HealthData") {
            Some(_) => Ok(0),
            None => Err(ImportError::Refused(
                "no <HealthData> element near the start: not an Apple Health export".into(),
            )),
        };
    };
    // The internal subset ends at `]` then `>`; everything in it is skipped
    // as text, so a malformed declaration cannot derail the parse.
    let rest = &text[doctype..];
    let end = match (rest.find('['), rest.find('>')) {
        (Some(open), Some(gt)) if open < gt => {
            let subset = &rest[open..];
            let close = subset
                .match_indices(']')
                .find(|(at, _)| subset[at + 1..].trim_start().starts_with('>'))
                .map(|(at, _)| at)
                .ok_or_else(|| {
                    ImportError::Refused("the document type declaration does not end".into())
                })?;
            let after = &subset[close + 1..];
            let gt = after.find('>').expect("checked above");
            if subset[..close].contains("<!ENTITY") {
                return Err(ImportError::Refused(
                    "the export declares entities (an external entity?): refused, Hearth never resolves them"
                        .into(),
                ));
            }
            open + close + 1 + gt + 1
        }
        (_, Some(gt)) => {
            if rest[..gt].contains("SYSTEM") || rest[..gt].contains("PUBLIC") {
                // An external DTD is never fetched; skipping it is harmless.
            }
            gt + 1
        }
        _ => {
            return Err(ImportError::Refused(
                "the document type declaration does not end".into(),
            ))
        }
    };
    // Offsets in the lossy text equal byte offsets up to here only if the
    // prologue is valid UTF-8; count bytes of the same prefix instead.
    let prefix = &text[..doctype + end];
    Ok(byte_len_of_lossy_prefix(head, prefix))
}

/// The number of bytes of `raw` that decode (lossily) to `prefix`.
fn byte_len_of_lossy_prefix(raw: &[u8], prefix: &str) -> usize {
    if std::str::from_utf8(&raw[..prefix.len().min(raw.len())]).is_ok_and(|s| s == prefix) {
        return prefix.len();
    }
    // Invalid bytes in the prologue: walk chunk by chunk.
    let mut bytes = 0;
    let mut chars = 0;
    let want = prefix.chars().count();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if chars == want {
                return bytes;
            }
            bytes += c.len_utf8();
            chars += 1;
        }
        if !chunk.invalid().is_empty() {
            if chars == want {
                return bytes;
            }
            bytes += chunk.invalid().len();
            chars += 1;
        }
    }
    bytes
}

/// Elements read one at a time from below the root.
pub struct Elements<R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    depth: usize,
    done: bool,
    spare: Spare,
}

/// The document after its prologue: the rest of the first read, then the input.
pub type Body<R> = std::io::Chain<Cursor<Vec<u8>>, R>;

/// Opens a stream of elements from `input`, positioned past the prologue.
pub fn elements<R: BufRead>(mut input: R) -> Result<Elements<Body<R>>, ImportError> {
    let mut head = Vec::with_capacity(64 << 10);
    (&mut input)
        .take(MAX_PROLOGUE as u64)
        .read_to_end(&mut head)
        .map_err(|e| ImportError::Refused(format!("reading the export: {e}")))?;
    if !is_export(&head) {
        return Err(ImportError::Refused(
            "no <HealthData> element near the start: not an Apple Health export".into(),
        ));
    }
    let start = prologue_end(&head)?;
    head.drain(..start);
    let chained = Cursor::new(head).chain(input);
    let mut reader = Reader::from_reader(chained);
    let config = reader.config_mut();
    config.trim_text(true);
    config.expand_empty_elements = false;
    config.check_end_names = true;
    Ok(Elements {
        reader,
        buf: Vec::with_capacity(64 << 10),
        depth: 0,
        done: false,
        spare: Spare::default(),
    })
}

/// Elements already handled, for the next ones to reuse their buffers.
#[derive(Default)]
struct Spare {
    elements: Vec<Element>,
    /// For a value quick-xml unescapes.
    raw: String,
    /// Where a tag's attribute names and values are.
    attributes: Vec<(Range<usize>, Range<usize>)>,
}

impl Spare {
    /// Elements kept, at most: more than a record with its metadata needs,
    /// and little memory (under 1 MiB) whatever a hostile export holds.
    const ELEMENTS: usize = 64;
    /// An element grown past these (a long value, an inline route) is freed.
    const BUF_BYTES: usize = 4 << 10;
    const ATTRS: usize = 64;
    const CHILDREN: usize = 256;

    fn element(&mut self) -> Element {
        self.elements.pop().unwrap_or_default()
    }

    fn keep(&mut self, mut el: Element) {
        for child in el.children.drain(..) {
            self.keep(child);
        }
        if self.elements.len() < Self::ELEMENTS
            && el.buf.capacity() <= Self::BUF_BYTES
            && el.attrs.capacity() <= Self::ATTRS
            && el.children.capacity() <= Self::CHILDREN
        {
            el.buf.clear();
            el.attrs.clear();
            el.name = Span::default();
            el.text = Span::default();
            self.elements.push(el);
        }
    }
}

/// Attribute values unescaped; a reference to an entity that does not
/// exist is kept as written (it is never resolved).
fn start_element(e: &BytesStart<'_>, spare: &mut Spare) -> Result<Element, String> {
    let tag: &[u8] = e;
    let name_len = e.name().as_ref().len();
    if let Err(err) = attributes(tag, name_len, &mut spare.attributes) {
        return Err(format!("malformed attribute: {err}"));
    }
    let mut el = spare.element();
    // The tag is checked as UTF-8 once and copied whole; its name and
    // attributes, cut out of it next to ASCII delimiters, are spans of
    // that copy. Those of a tag that is not UTF-8 are appended one by one.
    let copied = match std::str::from_utf8(tag) {
        Ok(text) => {
            el.buf.push_str(text);
            true
        }
        Err(_) => false,
    };
    let span = |el: &mut Element, part: Range<usize>| {
        if copied {
            Span::from(part)
        } else {
            el.push(&String::from_utf8_lossy(&tag[part]))
        }
    };
    el.name = span(&mut el, 0..name_len);
    // The tag's references, found in one pass: the values come in order.
    let mut references = memchr::memchr_iter(b'&', tag).peekable();
    for (key, range) in spare.attributes.drain(..) {
        while references.next_if(|&at| at < range.start).is_some() {}
        let escaped = references.peek().is_some_and(|&at| at < range.end);
        let key = span(&mut el, key);
        let mut value = span(&mut el, range);
        if escaped {
            value = unescaped(&mut el, value, &mut spare.raw);
        }
        el.attrs.push((key, value));
    }
    Ok(el)
}

/// Where the names and values of a start tag's attributes are (past its
/// name, `from`), into `out`: what quick-xml's attribute iterator (without
/// its check for duplicates) reads, with the same errors, at a fraction of
/// its cost (it steps through every byte of a value to find its end).
fn attributes(
    tag: &[u8],
    from: usize,
    out: &mut Vec<(Range<usize>, Range<usize>)>,
) -> Result<(), AttrError> {
    use quick_xml::utils::is_whitespace;
    out.clear();
    let len = tag.len();
    let skip_space = |mut at: usize| {
        while at < len && is_whitespace(tag[at]) {
            at += 1;
        }
        at
    };
    // Most values are in double quotes: those are found in one pass.
    let mut double_quotes = memchr::memchr_iter(b'"', tag);
    let mut at = skip_space(from);
    while at < len {
        // A name runs to `=` or a space, at least one byte long.
        let start = at;
        at += 1;
        while at < len && tag[at] != b'=' && !is_whitespace(tag[at]) {
            at += 1;
        }
        let key = start..at;
        at = skip_space(at);
        if at == len {
            return Err(AttrError::ExpectedEq(len));
        }
        if tag[at] != b'=' {
            return Err(AttrError::ExpectedEq(at));
        }
        at = skip_space(at + 1);
        let quote = match tag.get(at) {
            None => return Err(AttrError::ExpectedValue(len)),
            Some(&q @ (b'"' | b'\'')) => q,
            Some(_) => return Err(AttrError::UnquotedValue(at)),
        };
        let end = match quote {
            b'"' => double_quotes.find(|&q| q > at),
            _ => memchr::memchr(quote, &tag[at + 1..]).map(|end| at + 1 + end),
        };
        let Some(end) = end else {
            return Err(AttrError::ExpectedQuote(len, quote));
        };
        out.push((key, at + 1..end));
        at = skip_space(end + 1);
    }
    Ok(())
}

/// The value at `raw` unescaped, appended to the element's buffer; kept
/// as written if quick-xml cannot unescape it. Every device string is
/// escaped (`&lt;&lt;HKDevice: …`): the usual references are replaced
/// here, anything else is left to quick-xml.
fn unescaped(el: &mut Element, raw: Span, scratch: &mut String) -> Span {
    scratch.clear();
    scratch.push_str(el.get(raw));
    let start = el.buf.len();
    if unescape_predefined(scratch, &mut el.buf) {
        return Span::from(start..el.buf.len());
    }
    el.buf.truncate(start);
    match quick_xml::escape::unescape(scratch) {
        Ok(Cow::Owned(unescaped)) => el.push(&unescaped),
        _ => raw,
    }
}

/// `raw` with its references to XML's five predefined entities replaced,
/// appended to `out`, as `quick_xml::escape::unescape` would; `false` (and
/// anything appended) when `raw` holds another reference, or a malformed
/// one, for that function to read.
fn unescape_predefined(raw: &str, out: &mut String) -> bool {
    let mut rest = raw;
    while let Some(amp) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(end) = memchr::memchr2(b';', b'&', after.as_bytes())
            .filter(|&end| after.as_bytes()[end] == b';')
        else {
            return false;
        };
        let Some(text) = quick_xml::escape::resolve_xml_entity(&after[..end]) else {
            return false;
        };
        out.push_str(text);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    true
}

fn size_of(el: &Element) -> usize {
    el.name().len()
        + el.attrs()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum::<usize>()
        + 64
}

impl<R: BufRead> Elements<R> {
    /// Bytes of the document read so far (past the prologue).
    pub fn position(&self) -> u64 {
        self.reader.buffer_position()
    }

    /// Takes back an element [`Elements::next_element`] gave, to reuse its
    /// buffers for the next ones.
    pub fn recycle(&mut self, el: Element) {
        self.spare.keep(el);
    }

    /// The next child of the root, whole; `None` at the end of the document.
    pub fn next_element(&mut self) -> Result<Option<Element>, ImportError> {
        // Elements open below the root, innermost last.
        let mut stack: Vec<Element> = Vec::new();
        let mut bytes = 0usize;
        loop {
            if self.done {
                return Ok(None);
            }
            self.buf.clear();
            let event = self.reader.read_event_into(&mut self.buf).map_err(|e| {
                ImportError::Malformed(format!(
                    "the export's XML is malformed near byte {}: {e}",
                    self.reader.error_position()
                ))
            })?;
            // One tag or text past the limit on a whole element is refused
            // before anything is made of it (an element's buffer is
            // addressed with 32-bit offsets).
            let len = match &event {
                Event::Start(e) | Event::Empty(e) => e.len(),
                Event::Text(t) => t.len(),
                _ => 0,
            };
            if len > MAX_ELEMENT_BYTES {
                return Err(too_large());
            }
            match event {
                Event::Start(e) => {
                    self.depth += 1;
                    if self.depth == 1 {
                        // The root, `HealthData`: its children are what we yield.
                        continue;
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(ImportError::Malformed(format!(
                            "elements nested more than {MAX_DEPTH} deep near byte {}",
                            self.reader.buffer_position()
                        )));
                    }
                    let el = start_element(&e, &mut self.spare).map_err(ImportError::Malformed)?;
                    bytes += size_of(&el);
                    stack.push(el);
                }
                Event::Empty(e) => {
                    if self.depth == 0 {
                        self.done = true;
                        continue;
                    }
                    let el = start_element(&e, &mut self.spare).map_err(ImportError::Malformed)?;
                    bytes += size_of(&el);
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(Some(el)),
                    }
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.done = true;
                        continue;
                    }
                    let el = stack.pop().expect("an open element");
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(Some(el)),
                    }
                }
                Event::Text(t) => {
                    if let Some(el) = stack.last_mut() {
                        let raw = String::from_utf8_lossy(&t);
                        bytes += raw.len();
                        // Nothing is appended to an element after its
                        // start tag but its text: pieces of it (around a
                        // comment) join up.
                        let piece = el.push(raw.trim());
                        if el.text.start == el.text.end {
                            el.text = piece;
                        } else {
                            el.text.end = piece.end;
                        }
                    }
                }
                Event::Eof => {
                    if self.depth > 0 {
                        return Err(ImportError::Malformed(
                            "the export ends in the middle of the document (truncated?)".into(),
                        ));
                    }
                    self.done = true;
                }
                // Comments, processing instructions, CDATA and a stray
                // DOCTYPE: nothing Hearth reads.
                _ => {}
            }
            if bytes > MAX_ELEMENT_BYTES {
                return Err(too_large());
            }
        }
    }
}

fn too_large() -> ImportError {
    ImportError::Malformed(format!(
        "one element is larger than {} MiB",
        MAX_ELEMENT_BYTES >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(xml: &str) -> Result<Vec<Element>, ImportError> {
        let mut els = elements(xml.as_bytes())?;
        let mut out = Vec::new();
        while let Some(e) = els.next_element()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn broken_dtd_and_control_characters() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE HealthData [\n<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>\n<!ATTLIST VisionPrescription\n  type CDATA #REQUIRED\n<!ELEMENT Prism EMPTY>\n]>\n<HealthData locale=\"en_US\">\n <ExportDate value=\"2024-01-01 00:00:00 +0000\"/>\n <Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"Ana\u{b}s iPhone\" value=\"12\"><MetadataEntry key=\"Some key\" value=\"a &amp; b\"/></Record>\n</HealthData>\n";
        let els = all(xml).unwrap();
        assert_eq!(els.len(), 2);
        assert_eq!(els[1].attr("sourceName"), Some("Ana\u{b}s iPhone"));
        assert_eq!(els[1].children[0].attr("value"), Some("a & b"));
    }

    #[test]
    fn recycled_buffers_carry_nothing_over() {
        let xml = "<HealthData>\
            <Workout a=\"1\" b=\"two &amp; three\" c=\"3\"><WorkoutEvent type=\"pause\"/><Route><Location lat=\"1\"/><Location lat=\"2\"/></Route><Note>some text</Note></Workout>\
            <Record type=\"x\"/>\
            <Workout><Note>other</Note></Workout>\
            <Record type=\"y\" value=\"&lt;5\"><MetadataEntry key=\"k\" value=\"v\"/></Record>\
            <Me/>\
            </HealthData>";
        let fresh = all(xml).unwrap();
        let mut recycled = Vec::new();
        let mut els = elements(xml.as_bytes()).unwrap();
        while let Some(el) = els.next_element().unwrap() {
            recycled.push(el.clone());
            els.recycle(el);
        }
        assert_eq!(recycled, fresh);
        assert_eq!(fresh[1].attrs().collect::<Vec<_>>(), vec![("type", "x")]);
        assert!(fresh[4].attrs().next().is_none() && fresh[4].children.is_empty());
        assert_eq!(fresh[0].children[2].text(), "some text");
        assert_eq!(fresh[0].attr("b"), Some("two & three"));
        assert_eq!(fresh[3].attr("value"), Some("<5"));
    }

    #[test]
    fn a_tag_or_text_past_the_element_limit_is_refused() {
        let long = "x".repeat(MAX_ELEMENT_BYTES + 1);
        let tag = format!("<HealthData><Record value=\"{long}\"/></HealthData>");
        let text = format!("<HealthData><Note>{long}</Note></HealthData>");
        for xml in [tag, text] {
            let err = all(&xml).unwrap_err();
            assert!(
                matches!(&err, ImportError::Malformed(m) if m.contains("larger than")),
                "{err}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_text_pieces_join() {
        let mut xml = b"<HealthData><Record type=\"x\" sourceName=\"caf".to_vec();
        xml.extend_from_slice(
            b"\xff\" value=\"&lt;1\"><Note> a <!-- c --> b </Note></Record></HealthData>",
        );
        let mut els = elements(&xml[..]).unwrap();
        let el = els.next_element().unwrap().unwrap();
        assert_eq!(el.name(), "Record");
        assert_eq!(
            el.attrs().collect::<Vec<_>>(),
            vec![
                ("type", "x"),
                ("sourceName", "caf\u{fffd}"),
                ("value", "<1")
            ]
        );
        assert_eq!(el.children[0].text(), "ab");
        els.recycle(el);
        // A recycled element's buffer holds nothing of the last one.
        let next = b"<HealthData><Record a=\"1\"/></HealthData>";
        let mut els = elements(&next[..]).unwrap();
        assert_eq!(
            els.next_element().unwrap().unwrap(),
            Element::new("Record", &[("a", "1")], vec![], "")
        );
    }

    /// The attributes of `tag` (name and all) as quick-xml reads them,
    /// up to its first error.
    /// A tag's attribute names and values, or the first error.
    type Read = Result<Vec<(Vec<u8>, Vec<u8>)>, AttrError>;

    fn quick_xml_attributes(tag: &[u8]) -> Read {
        let name_len = tag
            .iter()
            .position(|&b| quick_xml::utils::is_whitespace(b))
            .unwrap_or(tag.len());
        let tag = std::str::from_utf8(tag).expect("test tags are text");
        BytesStart::from_content(tag, name_len)
            .attributes()
            .with_checks(false)
            .map(|a| a.map(|a| (a.key.as_ref().to_vec(), a.value.to_vec())))
            .collect()
    }

    fn our_attributes(tag: &[u8]) -> Read {
        let name_len = tag
            .iter()
            .position(|&b| quick_xml::utils::is_whitespace(b))
            .unwrap_or(tag.len());
        let mut ranges = vec![(0..1, 0..1)];
        attributes(tag, name_len, &mut ranges)?;
        Ok(ranges
            .into_iter()
            .map(|(k, v)| (tag[k].to_vec(), tag[v].to_vec()))
            .collect())
    }

    #[test]
    fn attributes_are_read_as_quick_xml_reads_them() {
        for tag in [
            &b"Record type=\"x\" value='1'"[..],
            b"Record\ttype = \"x\"\r\n value\t=\t'a\"b' ",
            b"Record a=\"1\"b=\"2\"",
            b"Record",
            b"Record ",
            b"Record a",
            b"Record a ",
            b"Record a b=\"1\"",
            b"Record a=",
            b"Record a= ",
            b"Record a=1",
            b"Record a=\"1",
            b"Record a='1\"",
            b"Record ==\"1\"",
            b"Record a==\"1\"",
            b"Record \"a\"=\"1\"",
            b"Record a=\"\"",
        ] {
            assert_eq!(
                our_attributes(tag),
                quick_xml_attributes(tag),
                "{}",
                String::from_utf8_lossy(tag)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_attributes_are_read_as_quick_xml_reads_them(
            tag in "R( a=\"1\"|\tb = 'x\"'| |\t|\n|\r|=|\"|'|a|b|é|&lt;){0,16}"
        ) {
            let tag = tag.as_bytes();
            proptest::prop_assert_eq!(our_attributes(tag), quick_xml_attributes(tag));
        }
    }

    #[test]
    fn each_value_is_unescaped_on_its_own() {
        let xml = "<HealthData><R a=\"&lt;\" b=\"x\" c='y&amp;z' d=\"&#60;\" e=\"&\" f=\"q\"/></HealthData>";
        let el = all(xml).unwrap().remove(0);
        assert_eq!(
            el.attrs().collect::<Vec<_>>(),
            vec![
                ("a", "<"),
                ("b", "x"),
                ("c", "y&z"),
                ("d", "<"),
                ("e", "&"),
                ("f", "q")
            ]
        );
    }

    #[test]
    fn predefined_references_are_replaced_as_quick_xml_replaces_them() {
        let device = "&lt;&lt;HKDevice: 0x283a5c2d0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:10.1&gt;";
        let mut out = String::new();
        assert!(unescape_predefined(device, &mut out));
        assert_eq!(out, "<<HKDevice: 0x283a5c2d0>, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:10.1>");
        for other in [
            "&#60;",
            "&#x3c;",
            "&nbsp;",
            "a & b",
            "a &amp b;",
            "&lt",
            "&;",
        ] {
            assert!(!unescape_predefined(other, &mut out), "{other}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_value_unescapes_as_quick_xml_unescapes_it(raw in "([a-z &;#]|&lt;|&gt;|&amp;|&apos;|&quot;|&#60;|&#x3c;){0,12}") {
            // Appended to what the buffer holds.
            let mut out = String::from("before ");
            if unescape_predefined(&raw, &mut out) {
                let read = quick_xml::escape::unescape(&raw).map(|r| format!("before {r}"));
                proptest::prop_assert_eq!(Some(out.as_str()), read.as_deref().ok());
            } else {
                let read = quick_xml::escape::unescape(&raw);
                proptest::prop_assert!(read.is_err() || raw.contains("&#"), "{raw}: {read:?}");
            }
        }
    }

    #[test]
    fn deeply_nested_elements_are_an_error_not_a_crash() {
        // Each level would cost a frame wherever the tree is walked
        // (hashing, mapping, freeing): deep enough, the stack overflows
        // and takes the server with it.
        let depth = 200_000;
        let xml = format!(
            "<HealthData><Record type=\"x\">{}{}</Record></HealthData>",
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        );
        let err = all(&xml).unwrap_err();
        assert!(
            matches!(&err, ImportError::Malformed(m) if m.contains("nested")),
            "{err}"
        );
        // The nesting real exports have is read.
        let nested = "<HealthData><Workout><WorkoutRoute><FileReference path=\"/r.gpx\"/></WorkoutRoute></Workout></HealthData>";
        assert_eq!(all(nested).unwrap()[0].children[0].children.len(), 1);
    }

    #[test]
    fn entities_are_refused() {
        let xml = "<?xml version=\"1.0\"?><!DOCTYPE HealthData [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><HealthData><Record value=\"&xxe;\"/></HealthData>";
        assert!(matches!(all(xml), Err(ImportError::Refused(_))));
    }

    #[test]
    fn truncated_documents_are_an_error() {
        let xml = "<HealthData><Record value=\"1\"/><Workout a=\"b\">";
        assert!(matches!(all(xml), Err(ImportError::Malformed(_))));
        assert!(matches!(all("<Other/>"), Err(ImportError::Refused(_))));
    }
}
