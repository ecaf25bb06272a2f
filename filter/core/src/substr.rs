//! Substring search over bytes. `str::contains(&str)` and friends bring in core's two-way
//! searcher (a few KiB of wasm); the needles here are short constants, so a plain scan does.

/// Byte offset of the first occurrence of `needle` in `hay`.
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

/// `hay.contains(needle)`.
pub fn contains(hay: &str, needle: &str) -> bool {
    find(hay, needle).is_some()
}

/// `hay.rsplit_once(sep)`.
pub fn rsplit_once<'a>(hay: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let at = if sep.is_empty() {
        hay.len()
    } else {
        hay.as_bytes()
            .windows(sep.len())
            .rposition(|w| w == sep.as_bytes())?
    };
    Some((hay.get(..at)?, hay.get(at + sep.len()..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn agrees_with_str() {
        let hays = [
            "",
            "a",
            "ab; cd; ef",
            "; ",
            "xx; ",
            "délai; é",
            "aaa",
            "abcabc",
        ];
        let needles = ["", "a", "; ", "é", "aa", "abc", "z", "cd; ef", "délai; é!"];
        for hay in hays {
            for needle in needles {
                assert_eq!(find(hay, needle), hay.find(needle), "{hay:?} {needle:?}");
                assert_eq!(contains(hay, needle), hay.contains(needle));
                assert_eq!(rsplit_once(hay, needle), hay.rsplit_once(needle));
            }
        }
    }
}
