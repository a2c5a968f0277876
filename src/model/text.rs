//! Text hygiene at every boundary: NFC normalisation and making customer text harmless
//! for a terminal.

use unicode_normalization::UnicodeNormalization;

/// NFC-normalises text; Zalo counts the 2,000-character limit on NFC text.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// Text as Vietnamese agents type it to search: lowercase, without tone marks or other
/// diacritics, and `đ` as `d` (it is a letter of its own, with no Unicode decomposition).
/// "Võ Thị Dung" and "vo thi dung" fold alike.
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'đ' { 'd' } else { c })
        .collect()
}

/// The colleagues a note mentions: `@` then a username's letters (letters, digits, `.`, `_`,
/// `-`), lowercased, each once, in order. "@HuongNT256 xem giúp" mentions "huongnt256".
pub fn mentioned_handles(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices('@') {
        // An @ inside a word (an email address) is not a mention.
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric())
        {
            continue;
        }
        let handle: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        let handle = handle.trim_end_matches(['.', '-']).to_lowercase();
        if !handle.is_empty() && !out.contains(&handle) {
            out.push(handle);
        }
    }
    out
}

/// The words of a search as the indexes hold them: folded, letters and digits only (what both
/// databases' tokenizers keep), at most eight.
pub fn search_terms(query: &str) -> Vec<String> {
    fold(query)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_string)
        .collect()
}

/// Text safe inside HTML (element content and quoted attributes): the hub's and the simulator's
/// pages show names that come from outside.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A file name as given by a client, made harmless to store and show: the last path component
/// only (`/` and `\\` both separate), no control or bidi characters, at most 255 bytes (cut on a
/// character boundary), and never empty.
pub fn file_name(given: &str) -> String {
    let last = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out = String::new();
    for c in nfc(last)
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
    {
        if out.len() + c.len_utf8() > 255 {
            break;
        }
        out.push(c);
    }
    let out = out.trim().trim_matches('.').to_string();
    if out.is_empty() {
        "file".to_string()
    } else {
        out
    }
}

pub fn char_count(s: &str) -> usize {
    s.chars().count()
}

/// Replaces control characters (C0, C1, DEL, ESC sequences' introducers) and bidi overrides with
/// visible stand-ins so customer text can never drive the terminal. Newlines and tabs become spaces
/// unless `keep_newlines`.
pub fn sanitize_for_terminal(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfc() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' | '\r' | '\t' => out.push(' '),
            '\u{1b}' => out.push('␛'),
            '\0' => out.push('␀'),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push('�'),
            '\u{80}'..='\u{9f}' => out.push('�'),
            // Bidi controls (Unicode's Bidi_Control set) could reorder the rest of the line.
            c if is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Unicode's Bidi_Control characters: embeddings, overrides, isolates and the directional marks
/// (the Arabic letter mark U+061C included — found by the `terminal_text` fuzz target).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_mention_usernames_after_an_at_sign() {
        assert_eq!(
            mentioned_handles("@HuongNT256 xem giúp, cc @que.ct3. Cảm ơn @HuongNT256!"),
            ["huongnt256", "que.ct3"]
        );
        assert!(mentioned_handles("mail huong@sop.vn, @ alone, @.").is_empty());
        assert_eq!(mentioned_handles("(@Tri_LM-22)"), ["tri_lm-22"]);
    }

    #[test]
    fn nfd_vietnamese_becomes_nfc() {
        let nfd = "Tie\u{302}\u{301}ng Vie\u{323}\u{302}t";
        assert_eq!(nfc(nfd), "Tiếng Việt");
        assert_eq!(char_count(&nfc(nfd)), 10);
    }

    #[test]
    fn fold_matches_vietnamese_typed_without_accents() {
        assert_eq!(fold("Võ Thị Dung"), "vo thi dung");
        assert_eq!(fold("Đặt lịch"), "dat lich");
        assert_eq!(fold("NGUYỄN"), "nguyen");
        assert_eq!(fold("Tie\u{302}\u{301}ng Vie\u{323}\u{302}t"), "tieng viet");
        assert_eq!(fold("đ"), fold("d"));
        assert_eq!(fold("Đạt"), "dat");
    }

    #[test]
    fn escapes_and_controls_are_neutralised() {
        let hostile = "a\u{1b}[2J\u{1b}]52;c;evil\u{7}b\0c\u{9b}d\u{202e}e";
        let clean = sanitize_for_terminal(hostile, false);
        assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
        assert!(clean.starts_with("a␛[2J"));
        assert!(clean.ends_with("de"));
    }

    #[test]
    fn every_bidi_control_is_dropped() {
        // The Arabic letter mark was left in until the fuzzer found it.
        let hostile = "\u{61c}a\u{200e}b\u{200f}c\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}d\u{2066}\u{2067}\u{2068}\u{2069}e";
        assert_eq!(sanitize_for_terminal(hostile, false), "abcde");
    }
}
