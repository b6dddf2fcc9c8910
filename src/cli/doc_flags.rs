//! Checks that README.md and docs/ stay true: their links resolve, and their command lines
//! only use flags the binaries have: every
//! `weir-*` command in a fenced code block, its flags read up to the end of the command (a pipe,
//! `;`, `&&`, a closing parenthesis), each looked up in the binary's own definition, its
//! subcommands' included. Synopses (`[--a | --b]`) are read too: a `|` inside brackets is an
//! alternative, not a pipe.

use super::{PAGES, Page};
use std::collections::HashSet;

/// `FILE:LINE: weir-x has no FLAG` for each flag the binary lacks.
pub fn unknown_flags(file: &str, text: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for (line_no, command) in fenced_commands(text) {
        for (bin, flag) in flags_used(&command) {
            let Some(page) = PAGES.iter().find(|p| p.name() == bin) else {
                wrong.push(format!("{file}:{line_no}: no binary {bin}"));
                continue;
            };
            if !flags_of(page).contains(&flag) {
                wrong.push(format!("{file}:{line_no}: {bin} has no {flag}"));
            }
        }
    }
    wrong
}

/// The logical lines of fenced code blocks (continuations joined), with where each starts.
fn fenced_commands(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open: Option<(usize, String)> = None;
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let (n, mut joined) = open.take().unwrap_or((i + 1, String::new()));
        match line.trim_end().strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                open = Some((n, joined));
            }
            None => {
                joined.push_str(line);
                out.push((n, joined));
            }
        }
    }
    out
}

/// Words split as a shell would, roughly: quotes keep a word together.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quote) = (Vec::new(), String::new(), None::<char>);
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                word.push(ch);
            }
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// (binary, flag) for every flag given to a `weir-*` command on the line.
fn flags_used(line: &str) -> Vec<(String, String)> {
    let (mut out, mut current, mut depth) = (Vec::new(), None::<String>, 0i32);
    for w in words(line) {
        if w.starts_with('#') && current.is_none() {
            break;
        }
        let ends = matches!(w.as_str(), ";" | "&&" | "||" | ")") || (w == "|" && depth == 0);
        depth += w.matches('[').count() as i32 - w.matches(']').count() as i32;
        if ends {
            current = None;
            continue;
        }
        // `--x;` and `--x)` end the command after their flag.
        let last = w.ends_with(';') || (w.ends_with(')') && !w.contains('('));
        let bare = w.trim_start_matches(['[', '(', '$', '|']);
        let bare = if last { &bare[..bare.len() - 1] } else { bare };
        if last {
            if let (Some(bin), Some(flag)) = (current.take(), flag_of(bare)) {
                out.push((bin, flag));
            }
            continue;
        }
        if let Some(bin) = bare.strip_prefix("weir-").map(|_| bare) {
            let name: String = bin
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-')
                .collect();
            current = Some(name);
            continue;
        }
        if let (Some(bin), Some(flag)) = (&current, flag_of(bare)) {
            out.push((bin.clone(), flag));
        }
    }
    out
}

/// The flag a word is, if it is one: `--fast[=N]`, `--catalog,` and `--x=1` name `--fast`,
/// `--catalog` and `--x`; `-j2` names `-j`; `-19` and `-` are not flags.
fn flag_of(word: &str) -> Option<String> {
    let dashes = word.len() - word.trim_start_matches('-').len();
    let name = word[dashes..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map_or(word, |end| &word[..dashes + end]);
    match dashes {
        2 if name.len() > 2 => Some(name.to_string()),
        1 if name.as_bytes().get(1).is_some_and(u8::is_ascii_alphabetic) => {
            Some(name[..2].to_string())
        }
        _ => None,
    }
}

/// Every long and short flag of the binary and its subcommands.
fn flags_of(page: &Page) -> HashSet<String> {
    fn walk(c: &clap::Command, out: &mut HashSet<String>) {
        for a in c.get_arguments() {
            if let Some(l) = a.get_long() {
                out.insert(format!("--{l}"));
            }
            if let Some(s) = a.get_short() {
                out.insert(format!("-{s}"));
            }
        }
        for s in c.get_subcommands() {
            walk(s, out);
        }
    }
    let mut out: HashSet<String> = ["--help", "--version"].map(String::from).into();
    walk(&(page.command)(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_to_the_end_of_each_command() {
        let used = flags_used(
            "weir-extract -j2 --no-owner app | weir-compress -19 | weir-put s3://b/x --if-none-match; zstd -d",
        );
        let want = [
            ("weir-extract", "-j"),
            ("weir-extract", "--no-owner"),
            ("weir-put", "--if-none-match"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(b, f)| (b.to_string(), f.to_string()))
            .collect();
        assert_eq!(used, want);
        let synopsis = flags_used(
            "weir-cdc [CONN] [--copy | --copy-and-stream [-j N]] -E \"$(psql -XAtc 'x')\"",
        );
        let names: Vec<&str> = synopsis.iter().map(|(_, f)| f.as_str()).collect();
        assert_eq!(names, ["--copy", "--copy-and-stream", "-j", "-E"]);
    }

    #[test]
    fn a_flag_a_binary_lacks_is_named_with_its_line() {
        let text =
            "text --not-code\n```sh\nweir-cdc -S s --stream \\\n  --bogus | weir-apply -f x\n```\n";
        assert_eq!(
            unknown_flags("R.md", text),
            ["R.md:3: weir-cdc has no --bogus"]
        );
        assert!(unknown_flags("R.md", "```\nweir-nope -x\n```\n")[0].contains("no binary"));
    }

    /// README.md and every Markdown file under docs/.
    fn guides() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        for e in std::fs::read_dir(root.join("docs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
        files
    }

    /// Every relative link of README.md and docs/ names a file that exists.
    #[test]
    fn links_between_readme_and_guides_resolve() {
        let mut broken = Vec::new();
        for f in &guides() {
            let text = std::fs::read_to_string(f).unwrap();
            for target in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
                let path = target.split('#').next().unwrap_or_default();
                if path.is_empty() || path.contains("://") || path.contains(' ') {
                    continue;
                }
                if !f.parent().unwrap().join(path).exists() {
                    broken.push(format!("{}: {target}", f.display()));
                }
            }
        }
        assert!(
            broken.is_empty(),
            "links to nothing:\n{}",
            broken.join("\n")
        );
    }

    #[test]
    fn readme_and_guides_use_only_flags_the_binaries_have() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut wrong = Vec::new();
        for f in &guides() {
            let text = std::fs::read_to_string(f).unwrap();
            let name = f.strip_prefix(root).unwrap().display().to_string();
            wrong.extend(unknown_flags(&name, &text));
        }
        assert!(
            wrong.is_empty(),
            "flags the binaries do not have:\n{}",
            wrong.join("\n")
        );
    }
}
