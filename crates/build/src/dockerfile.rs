//! The Dockerfile: parsed by `parse-dockerfile` (the escape directive, line continuations,
//! JSON and shell forms, heredocs), then turned into corral's own model — stages of steps,
//! each step with its line, column and text — which the builder runs. Nothing is expanded
//! here: expansion needs the build's arguments and each stage's environment.

use std::fmt;

use parse_dockerfile as pd;

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The escape character (`\`, or `` ` `` by `# escape=`).
    pub escape: char,
    /// The `ARG`s before the first `FROM` (global: usable in `FROM` lines).
    pub global_args: Vec<Step>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and what follows it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Its position (what `COPY --from=0` names).
    pub index: usize,
    /// `AS name`, lower-cased as Docker compares them.
    pub name: Option<String>,
    /// The base, unexpanded: an image, `scratch` or an earlier stage's name.
    pub base: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// The `FROM` step itself (line, text).
    pub from: Step,
    /// The steps after `FROM`.
    pub steps: Vec<Step>,
}

/// One instruction, where it is and what it says.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line of its keyword.
    pub line: usize,
    /// 1-based column of its keyword.
    pub column: usize,
    /// Its text, continuation lines joined (for progress and history).
    pub text: String,
    /// What it does.
    pub instr: Instr,
}

/// A command in exec form (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `["a", "b"]`
    Exec(Vec<String>),
    /// `a b` (run by the stage's `SHELL`).
    Shell(String),
}

/// A `COPY`/`ADD` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path, glob or URL (unexpanded).
    Path(String),
    /// A heredoc: a file named `name` holding `body`.
    Inline {
        /// The delimiter: the file's name.
        name: String,
        /// The content.
        body: String,
        /// Whether variables in it expand (the delimiter was not quoted).
        expand: bool,
    },
}

/// A flag of an instruction, `--name[=value]`.
pub type Flag = (String, Option<String>);

/// The instructions.
#[derive(Debug, Clone)]
pub enum Instr {
    /// `FROM` (also in [`Stage::from`]).
    From,
    /// `ARG NAME[=default] ...` (unexpanded).
    Arg(String),
    /// `ENV K=V ...` (unexpanded).
    Env(String),
    /// `LABEL K=V ...` (unexpanded).
    Label(String),
    /// `RUN [flags] command`, with its heredocs' bodies.
    Run {
        /// `--mount`, `--network`, `--security`.
        flags: Vec<Flag>,
        /// The command.
        command: Command,
        /// Heredoc bodies, in order, each with whether it expands.
        heredocs: Vec<(String, bool)>,
    },
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL ["a", "b"]`.
    Shell(Vec<String>),
    /// `COPY` or `ADD`.
    Copy {
        /// `ADD` rather than `COPY`.
        add: bool,
        /// `--from`, `--chown`, `--chmod`, `--link`, `--checksum`, `--keep-git-dir`,
        /// `--exclude`, `--parents`.
        flags: Vec<Flag>,
        /// The sources.
        sources: Vec<Source>,
        /// The destination (unexpanded).
        dest: String,
    },
    /// `WORKDIR` (unexpanded).
    Workdir(String),
    /// `USER` (unexpanded).
    User(String),
    /// `EXPOSE` ports (unexpanded).
    Expose(Vec<String>),
    /// `VOLUME` paths (unexpanded).
    Volume(Vec<String>),
    /// `STOPSIGNAL` (unexpanded).
    Stopsignal(String),
    /// `HEALTHCHECK [flags] CMD command` (`None`: `HEALTHCHECK NONE`).
    Healthcheck {
        /// `--interval`, `--timeout`, `--start-period`, `--start-interval`, `--retries`.
        flags: Vec<Flag>,
        /// The check.
        command: Option<Command>,
    },
    /// `ONBUILD INSTRUCTION`: the trigger's text.
    Onbuild(String),
    /// `MAINTAINER name` (deprecated; a label-less `author`).
    Maintainer(String),
}

impl Instr {
    /// The keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instr::From => "FROM",
            Instr::Arg(_) => "ARG",
            Instr::Env(_) => "ENV",
            Instr::Label(_) => "LABEL",
            Instr::Run { .. } => "RUN",
            Instr::Cmd(_) => "CMD",
            Instr::Entrypoint(_) => "ENTRYPOINT",
            Instr::Shell(_) => "SHELL",
            Instr::Copy { add: false, .. } => "COPY",
            Instr::Copy { add: true, .. } => "ADD",
            Instr::Workdir(_) => "WORKDIR",
            Instr::User(_) => "USER",
            Instr::Expose(_) => "EXPOSE",
            Instr::Volume(_) => "VOLUME",
            Instr::Stopsignal(_) => "STOPSIGNAL",
            Instr::Healthcheck { .. } => "HEALTHCHECK",
            Instr::Onbuild(_) => "ONBUILD",
            Instr::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// Why a Dockerfile does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ParseError {}

/// Where byte `pos` of `text` is: (line, column), both 1-based.
pub fn position(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, col)
}

/// The text between `start` and `end` with line continuations (the escape character at the
/// end of a line) joined and comment lines inside dropped.
fn joined(text: &str, start: usize, end: usize, escape: char) -> String {
    let raw = &text[start.min(text.len())..end.min(text.len())];
    let mut out = String::new();
    let mut lines = raw.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_end();
        if t.trim_start().starts_with('#') && !out.is_empty() {
            continue;
        }
        match t.strip_suffix(escape) {
            Some(rest) if lines.peek().is_some() => out.push_str(rest),
            _ => {
                out.push_str(t);
                if lines.peek().is_some() {
                    out.push('\n');
                }
            }
        }
    }
    out.trim().to_owned()
}

fn flags<'a>(f: impl IntoIterator<Item = &'a pd::Flag<'a>>) -> (Vec<Flag>, usize) {
    let mut end = 0;
    let v = f
        .into_iter()
        .map(|f| {
            end = end.max(f.span().end);
            (
                f.name.value.to_string(),
                f.value.as_ref().map(|v| v.value.to_string()),
            )
        })
        .collect();
    (v, end)
}

fn command(c: &pd::Command<'_>) -> (Command, usize) {
    match c {
        pd::Command::Exec(a) => (
            Command::Exec(a.value.iter().map(|s| s.value.to_string()).collect()),
            a.span.end,
        ),
        pd::Command::Shell(s) => (Command::Shell(s.value.to_owned()), s.span.end),
        // A form this version of the parser does not know yet: nothing to run.
        _ => (Command::Shell(String::new()), 0),
    }
}

/// Converts one parsed instruction; returns it and the end of its text.
fn convert(text: &str, i: &pd::Instruction<'_>) -> Result<(Instr, usize, usize), ParseError> {
    let err = |pos: usize, m: String| {
        let (line, column) = position(text, pos);
        ParseError {
            line,
            column,
            message: m,
        }
    };
    Ok(match i {
        pd::Instruction::From(f) => (Instr::From, f.from.span.start, {
            let mut e = f.image.span.end;
            if let Some((_, n)) = &f.as_ {
                e = n.span.end;
            }
            e
        }),
        pd::Instruction::Arg(a) => (
            Instr::Arg(a.arguments.value.to_string()),
            a.arg.span.start,
            a.arguments.span.end,
        ),
        pd::Instruction::Env(a) => (
            Instr::Env(a.arguments.value.to_string()),
            a.env.span.start,
            a.arguments.span.end,
        ),
        pd::Instruction::Label(a) => (
            Instr::Label(a.arguments.value.to_string()),
            a.label.span.start,
            a.arguments.span.end,
        ),
        pd::Instruction::Run(r) => {
            let (fl, _) = flags(r.options.iter());
            let (command, mut end) = command(&r.arguments);
            let heredocs = r
                .here_docs
                .iter()
                .map(|h| {
                    end = end.max(h.span.end);
                    (h.value.to_string(), h.expand)
                })
                .collect();
            (
                Instr::Run {
                    flags: fl,
                    command,
                    heredocs,
                },
                r.run.span.start,
                end,
            )
        }
        pd::Instruction::Cmd(c) => {
            let (command, end) = command(&c.arguments);
            (Instr::Cmd(command), c.cmd.span.start, end)
        }
        pd::Instruction::Entrypoint(c) => {
            let (command, end) = command(&c.arguments);
            (Instr::Entrypoint(command), c.entrypoint.span.start, end)
        }
        pd::Instruction::Shell(s) => (
            Instr::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect()),
            s.shell.span.start,
            s.arguments
                .last()
                .map_or(s.shell.span.end, |a| a.span.end + 1),
        ),
        pd::Instruction::Copy(c) => copy(text, false, &c.copy, &c.options, &c.src, &c.dest),
        pd::Instruction::Add(c) => copy(text, true, &c.add, &c.options, &c.src, &c.dest),
        pd::Instruction::Workdir(w) => (
            Instr::Workdir(w.arguments.value.to_string()),
            w.workdir.span.start,
            w.arguments.span.end,
        ),
        pd::Instruction::User(u) => (
            Instr::User(u.arguments.value.to_string()),
            u.user.span.start,
            u.arguments.span.end,
        ),
        pd::Instruction::Expose(e) => (
            Instr::Expose(e.arguments.iter().map(|a| a.value.to_string()).collect()),
            e.expose.span.start,
            e.arguments.last().map_or(e.expose.span.end, |a| a.span.end),
        ),
        pd::Instruction::Volume(v) => {
            let (list, end) = match &v.arguments {
                pd::JsonOrStringArray::Json(j) => (
                    j.value.iter().map(|a| a.value.to_string()).collect(),
                    j.span.end,
                ),
                pd::JsonOrStringArray::String(s) => (
                    s.iter().map(|a| a.value.to_string()).collect(),
                    s.last().map_or(v.volume.span.end, |a| a.span.end),
                ),
            };
            (Instr::Volume(list), v.volume.span.start, end)
        }
        pd::Instruction::Stopsignal(s) => (
            Instr::Stopsignal(s.arguments.value.to_string()),
            s.stopsignal.span.start,
            s.arguments.span.end,
        ),
        pd::Instruction::Healthcheck(h) => {
            let (fl, _) = flags(h.options.iter());
            let (cmd, end) = match &h.arguments {
                pd::HealthcheckArguments::Cmd { arguments, .. } => {
                    let (c, e) = command(arguments);
                    (Some(c), e)
                }
                pd::HealthcheckArguments::None { none, .. } => (None, none.span.end),
                _ => {
                    return Err(err(
                        h.healthcheck.span.start,
                        "HEALTHCHECK: expected CMD or NONE".into(),
                    ))
                }
            };
            (
                Instr::Healthcheck {
                    flags: fl,
                    command: cmd,
                },
                h.healthcheck.span.start,
                end,
            )
        }
        pd::Instruction::Onbuild(o) => {
            let (_, start, end) = convert(text, &o.instruction)?;
            (
                Instr::Onbuild(text[start..end].to_owned()),
                o.onbuild.span.start,
                end,
            )
        }
        pd::Instruction::Maintainer(m) => (
            Instr::Maintainer(m.name.value.to_string()),
            m.maintainer.span.start,
            m.name.span.end,
        ),
        _ => return Err(err(0, "an instruction this builder does not know".into())),
    })
}

fn copy(
    text: &str,
    add: bool,
    kw: &pd::Keyword,
    options: &[pd::Flag<'_>],
    src: &[pd::Source<'_>],
    dest: &pd::UnescapedString<'_>,
) -> (Instr, usize, usize) {
    let (fl, _) = flags(options.iter());
    let sources = src
        .iter()
        .map(|s| match s {
            pd::Source::Path(p) => Source::Path(p.value.to_string()),
            pd::Source::HereDoc(h) => {
                // The delimiter's word, from `<<[-]["']NAME["']` in the text.
                let before = &text[..h.span.start.min(text.len())];
                let head = before.rfind("<<").map_or("", |i| &before[i..]);
                let name: String = head
                    .trim_start_matches('<')
                    .trim_start_matches('-')
                    .trim_start_matches(['"', '\''])
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '-')
                    .collect();
                Source::Inline {
                    name,
                    body: h.value.to_string(),
                    expand: h.expand,
                }
            }
            _ => Source::Path(String::new()),
        })
        .collect();
    let end = src
        .iter()
        .map(|s| match s {
            pd::Source::Path(p) => p.span.end,
            pd::Source::HereDoc(h) => h.span.end,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
        .max(dest.span.end);
    (
        Instr::Copy {
            add,
            flags: fl,
            sources,
            dest: dest.value.to_string(),
        },
        kw.span.start,
        end,
    )
}

/// Parses a Dockerfile's text.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let parsed = pd::parse(text).map_err(|e| {
        let line = e.line();
        // The crate names the line; the column is where that line's text starts.
        let column = text
            .lines()
            .nth(line.saturating_sub(1))
            .map_or(1, |l| l.len() - l.trim_start().len() + 1);
        ParseError {
            line,
            column,
            message: format!("{e:#}"),
        }
    })?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in &parsed.instructions {
        let (instr, start, end) = convert(text, i)?;
        let (line, column) = position(text, start);
        let step = Step {
            line,
            column,
            text: joined(text, start, end, escape),
            instr,
        };
        if let pd::Instruction::From(f) = i {
            let (fl, _) = flags(f.options.iter());
            let mut platform = None;
            for (name, value) in fl {
                if name != "platform" {
                    return Err(ParseError {
                        line,
                        column,
                        message: format!("FROM: unknown flag --{name} (FROM takes --platform)"),
                    });
                }
                platform = value;
            }
            stages.push(Stage {
                index: stages.len(),
                name: f.as_.as_ref().map(|(_, n)| n.value.to_ascii_lowercase()),
                base: f.image.value.to_string(),
                platform,
                from: step,
                steps: Vec::new(),
            });
            continue;
        }
        match stages.last_mut() {
            Some(s) => s.steps.push(step),
            None => global_args.push(step),
        }
    }
    Ok(Dockerfile {
        escape,
        global_args,
        stages,
    })
}

/// Parses one instruction's text (an `ONBUILD` trigger) as a step.
pub fn parse_trigger(trigger: &str) -> Result<Step, ParseError> {
    let text = format!("FROM scratch\n{trigger}\n");
    let mut df = parse(&text)?;
    let mut steps = df.stages.pop().map(|s| s.steps).unwrap_or_default();
    match (steps.pop(), steps.is_empty()) {
        (Some(s), true) if !matches!(s.instr, Instr::Onbuild(_)) => Ok(s),
        _ => Err(ParseError {
            line: 0,
            column: 0,
            message: format!("ONBUILD trigger {trigger:?} is not one instruction (ONBUILD ONBUILD is not allowed)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_steps_and_positions() {
        let df = parse(
            "ARG V=1\nFROM busybox AS Build\nRUN echo a \\\n  && echo b\nCOPY --from=x a b /c/\n\nFROM scratch\nCOPY --from=build /c /\nCMD [\"sh\"]\n",
        )
        .unwrap();
        assert_eq!(df.global_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(df.stages[0].base, "busybox");
        let run = &df.stages[0].steps[0];
        assert_eq!((run.line, run.column), (3, 1));
        assert_eq!(run.text, "RUN echo a   && echo b");
        match &run.instr {
            Instr::Run {
                command: Command::Shell(s),
                ..
            } => {
                assert!(s.contains("echo a") && s.contains("echo b"), "{s:?}")
            }
            o => panic!("{o:?}"),
        }
        match &df.stages[0].steps[1].instr {
            Instr::Copy {
                flags,
                sources,
                dest,
                add: false,
            } => {
                assert_eq!(flags[0], ("from".into(), Some("x".into())));
                assert_eq!(sources.len(), 2);
                assert_eq!(dest, "/c/");
            }
            o => panic!("{o:?}"),
        }
        assert!(
            matches!(&df.stages[1].steps[1].instr, Instr::Cmd(Command::Exec(v)) if v == &["sh"])
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("FROM busybox\n  FLY away\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e}");
        assert!(e.message.contains("FLY"), "{e}");
        let e = parse("RUN true\n").unwrap_err();
        assert!(e.message.contains("FROM"), "{e}");
        assert!(parse("FROM --plat=x busybox\n").is_err());
    }

    #[test]
    fn heredocs_and_triggers() {
        let df = parse(
            "FROM busybox\nRUN <<EOF\necho hi\nEOF\nCOPY <<note.txt /n/\nhello $X\nnote.txt\n",
        )
        .unwrap();
        match &df.stages[0].steps[0].instr {
            Instr::Run { heredocs, .. } => assert_eq!(heredocs[0].0, "echo hi\n"),
            o => panic!("{o:?}"),
        }
        match &df.stages[0].steps[1].instr {
            Instr::Copy { sources, .. } => match &sources[0] {
                Source::Inline { name, body, expand } => {
                    assert_eq!(name, "note.txt");
                    assert_eq!(body, "hello $X\n");
                    assert!(expand);
                }
                o => panic!("{o:?}"),
            },
            o => panic!("{o:?}"),
        }
        let t = parse_trigger("RUN echo triggered").unwrap();
        assert_eq!(t.instr.keyword(), "RUN");
        assert!(parse_trigger("ONBUILD RUN x").is_err());
    }
}

#[cfg(test)]
mod hostile {
    //! A cheap stand-in for `fuzz/fuzz_targets/dockerfile.rs` that runs with the unit tests:
    //! mutations of a Dockerfile that uses every form, through the parser and the expander.

    #[test]
    fn mutated_dockerfiles_never_panic() {
        let seed = "# escape=\\\nARG V=${X:-1}\nFROM busybox AS b\nRUN <<EOF\necho $V\nEOF\nCOPY --from=b --chown=1:2 a* \"/d e/\"\nENV A=\"x y\" B=${A:+z}\nHEALTHCHECK --interval=5s CMD [\"true\"]\nONBUILD RUN x\nVOLUME [\"/v\"]\nSHELL [\"/bin/sh\",\"-c\"]\nCMD echo \\\n  hi\n";
        let bytes = seed.as_bytes();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"$ {}:-+?\"'\\`\n=[]<>,#AFRUNCOPYE*";
        for _ in 0..4000 {
            let mut m = bytes.to_vec();
            for _ in 0..(next() % 6 + 1) {
                let at = (next() as usize) % (m.len() + 1);
                match next() % 3 {
                    0 if !m.is_empty() && at < m.len() => {
                        m.remove(at);
                    }
                    1 => m.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                    _ => {
                        let len = (next() as usize) % 12;
                        let from = (next() as usize) % bytes.len();
                        let piece: Vec<u8> = bytes[from..(from + len).min(bytes.len())].to_vec();
                        for (i, b) in piece.into_iter().enumerate() {
                            m.insert((at + i).min(m.len()), b);
                        }
                    }
                }
            }
            let Ok(text) = std::str::from_utf8(&m) else {
                continue;
            };
            if let Ok(df) = super::parse(text) {
                for s in df.stages.iter().flat_map(|s| s.steps.iter()) {
                    let _ = super::parse_trigger(&s.text);
                }
            }
            let vars = |n: &str| n.len().is_multiple_of(2).then(|| n.to_owned());
            let _ = crate::expand::words(text, '\\', &vars);
            let _ = crate::expand::text(text, '`', &vars);
            let _ = crate::expand::pairs(text, '\\', &vars, true);
        }
    }
}
