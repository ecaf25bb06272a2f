//! Colour on a terminal only (and never with `NO_COLOR`).

use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

/// `--color auto|always|never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl Style {
    pub fn new(choice: ColorChoice) -> Style {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Style { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// l4 in red, l7 in yellow, unknown in magenta.
    pub fn layer(&self, layer: &str) -> String {
        let code = match layer {
            "l4" => "1;31",
            "l7" => "1;33",
            _ => "1;35",
        };
        self.paint(code, layer)
    }
}
