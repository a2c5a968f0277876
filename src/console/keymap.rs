//! Key bindings: `assets/keymap.toml` compiled in, single actions overridden by the user's file.
//! The help overlay is generated from the same table.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const DEFAULT_KEYMAP: &str = include_str!("../../assets/keymap.toml");

/// Every action the console can do from the keyboard, in help order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Help,
    Palette,
    NextTab,
    PrevTab,
    TabInbox,
    TabConnections,
    TabRules,
    Up,
    Down,
    PageUp,
    PageDown,
    Open,
    Back,
    Filter,
    Search,
    Mentions,
    ViewMine,
    ViewUnclaimed,
    ViewAll,
    Urgent,
    Claim,
    Reply,
    QuoteReply,
    Note,
    Customer,
    Labels,
    Attach,
    Editor,
    Transfer,
    Release,
    Done,
    ToggleAvailability,
    Older,
    AddConnection,
    Reconnect,
    Remove,
    ChatMode,
    NewRule,
    EditRule,
    Send,
    Save,
}

pub const ALL_ACTIONS: &[(Action, &str)] = &[
    (Action::Quit, "quit"),
    (Action::Help, "help"),
    (Action::Palette, "palette"),
    (Action::NextTab, "next_tab"),
    (Action::PrevTab, "prev_tab"),
    (Action::TabInbox, "tab_inbox"),
    (Action::TabConnections, "tab_connections"),
    (Action::TabRules, "tab_rules"),
    (Action::Up, "up"),
    (Action::Down, "down"),
    (Action::PageUp, "page_up"),
    (Action::PageDown, "page_down"),
    (Action::Open, "open"),
    (Action::Back, "back"),
    (Action::Filter, "filter"),
    (Action::Search, "search"),
    (Action::Mentions, "mentions"),
    (Action::ViewMine, "view_mine"),
    (Action::ViewUnclaimed, "view_unclaimed"),
    (Action::ViewAll, "view_all"),
    (Action::Urgent, "urgent"),
    (Action::Claim, "claim"),
    (Action::Reply, "reply"),
    (Action::QuoteReply, "quote_reply"),
    (Action::Note, "note"),
    (Action::Customer, "customer"),
    (Action::Labels, "labels"),
    (Action::Attach, "attach"),
    (Action::Editor, "editor"),
    (Action::Transfer, "transfer"),
    (Action::Release, "release"),
    (Action::Done, "done"),
    (Action::ToggleAvailability, "toggle_availability"),
    (Action::Older, "older"),
    (Action::AddConnection, "add_connection"),
    (Action::Reconnect, "reconnect"),
    (Action::Remove, "remove"),
    (Action::ChatMode, "chat_mode"),
    (Action::NewRule, "new_rule"),
    (Action::EditRule, "edit_rule"),
    (Action::Send, "send"),
    (Action::Save, "save"),
];

impl Action {
    pub fn name(self) -> &'static str {
        ALL_ACTIONS
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
    pub fn from_name(name: &str) -> Option<Action> {
        ALL_ACTIONS
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(a, _)| *a)
    }
}

#[derive(Deserialize)]
struct KeymapFile {
    keys: BTreeMap<String, Vec<String>>,
}

/// A parsed key: code plus the modifiers that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Key {
        // Shifted letters arrive as the upper-case char; SHIFT itself is not part of the key.
        Key {
            code: e.code,
            ctrl: e.modifiers.contains(KeyModifiers::CONTROL),
            alt: e.modifiers.contains(KeyModifiers::ALT),
        }
    }

    pub fn parse(s: &str) -> Result<Key, String> {
        let (mut ctrl, mut alt, mut rest) = (false, false, s);
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-").filter(|r| !r.is_empty()) {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-").filter(|r| !r.is_empty()) {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            "space" => KeyCode::Char(' '),
            f if f.starts_with('f') && f.len() > 1 && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().unwrap())
            }
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().unwrap()),
            other => return Err(format!("unknown key {other:?}")),
        };
        Ok(Key { code, ctrl, alt })
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Delete => "Del".into(),
            other => format!("{other:?}"),
        };
        match (self.ctrl, self.alt) {
            (true, _) => format!("Ctrl-{base}"),
            (_, true) => format!("Alt-{base}"),
            _ => base,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: Vec<(Key, Action)>,
}

impl Keymap {
    /// The defaults, with each action found in `user` replacing the default keys of that action.
    pub fn load(user: Option<&str>) -> Result<Keymap, String> {
        let mut table = toml::from_str::<KeymapFile>(DEFAULT_KEYMAP)
            .map_err(|e| e.to_string())?
            .keys;
        if let Some(text) = user {
            let overrides = toml::from_str::<KeymapFile>(text)
                .map_err(|e| format!("keymap: {e}"))?
                .keys;
            for (name, keys) in overrides {
                if Action::from_name(&name).is_none() {
                    return Err(format!("keymap: unknown action {name:?}"));
                }
                table.insert(name, keys);
            }
        }
        let mut bindings = Vec::new();
        for (name, keys) in table {
            let action = Action::from_name(&name)
                .ok_or_else(|| format!("keymap: unknown action {name:?}"))?;
            for k in keys {
                bindings.push((
                    Key::parse(&k).map_err(|e| format!("keymap {name}: {e}"))?,
                    action,
                ));
            }
        }
        Ok(Keymap { bindings })
    }

    pub fn default_map() -> Keymap {
        Keymap::load(None).expect("built-in keymap parses")
    }

    /// Every action bound to this key (context decides which applies).
    pub fn actions(&self, e: &KeyEvent) -> Vec<Action> {
        let key = Key::from_event(e);
        self.bindings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, a)| *a)
            .collect()
    }

    pub fn keys_for(&self, action: Action) -> Vec<String> {
        self.bindings
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(k, _)| k.label())
            .collect()
    }

    /// The first key of an action, for hints.
    pub fn hint(&self, action: Action) -> String {
        self.keys_for(action).into_iter().next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_every_action_and_overrides_replace_one() {
        let km = Keymap::default_map();
        for (a, name) in ALL_ACTIONS {
            assert!(!km.keys_for(*a).is_empty(), "{name} has no key");
        }
        let km = Keymap::load(Some("[keys]\nclaim = [\"C\", \"ctrl-n\"]")).unwrap();
        assert_eq!(km.keys_for(Action::Claim), vec!["C", "Ctrl-n"]);
        assert_eq!(km.keys_for(Action::Quit), vec!["q", "Ctrl-c"]);
        assert!(Keymap::load(Some("[keys]\nfly = [\"z\"]")).is_err());
        assert!(Keymap::load(Some("[keys]\nquit = [\"hyper-q\"]")).is_err());
    }

    #[test]
    fn no_essential_action_needs_alt() {
        let km = Keymap::default_map();
        for (a, _) in ALL_ACTIONS {
            assert!(km.keys_for(*a).iter().any(|k| !k.starts_with("Alt-")));
        }
    }
}
