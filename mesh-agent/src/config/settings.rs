//! Declaring a group of settings once: [`settings!`] turns one list of
//! documented fields (`name: Type = default`, with their `#[arg]` and
//! `#[serde]` attributes) into
//!
//! - a struct of `Option`s that is both the clap arguments (flag, env,
//!   help) and the TOML file's keys (`#[serde(default)]`, unknown keys
//!   refused by name);
//! - `or`, the generic merge step: flag/env over file;
//! - `resolve`, applying each default, into a second struct whose fields
//!   are plain values where a default exists;
//! - `to_args`, rendering the set settings back as `--flag=value`
//!   arguments (the child process's command line).
//!
//! So adding a setting is one entry. The flag is the field name in
//! kebab-case (no `long = "..."` overrides), which `to_args` relies on.
use std::{
    ffi::OsString,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// See the module documentation.
macro_rules! settings {
    (
        $(#[$attr:meta])*
        pub struct $name:ident => $resolved:ident {
            $(
                $(#[$field_attr:meta])*
                $field:ident: $ty:ty $(= $default:expr)?,
            )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default, Clone, PartialEq, clap::Args, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$field_attr])*
                pub $field: Option<$ty>,
            )*
        }

        #[doc = concat!("[`", stringify!($name), "`] with its defaults applied.")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct $resolved {
            $(pub $field: settings_type!($ty $(, $default)?),)*
        }

        impl $name {
            /// The keys of the file (the field names).
            #[allow(dead_code)] // Only some groups share a file with another.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Each setting from `self` where it is set, else from `lower`.
            pub fn or(&self, lower: &Self) -> Self {
                Self {
                    $($field: self.$field.clone().or_else(|| lower.$field.clone()),)*
                }
            }

            /// The settings with the built-in defaults applied.
            pub fn resolve(&self) -> $resolved {
                $resolved {
                    $($field: settings_default!(self.$field.clone() $(, $default)?),)*
                }
            }

            /// The set settings as `--flag=value` arguments; parsing them
            /// gives `self` back.
            pub fn to_args(&self) -> Vec<std::ffi::OsString> {
                let mut args = Vec::new();
                $(
                    if let Some(value) = &self.$field {
                        args.push($crate::config::settings::flag(stringify!($field), value));
                    }
                )*
                args
            }
        }
    };
}

/// A setting's resolved type: the value itself where a default exists.
macro_rules! settings_type {
    ($ty:ty, $default:expr) => { $ty };
    ($ty:ty) => { Option<$ty> };
}

/// A setting's resolved value.
macro_rules! settings_default {
    ($value:expr, $default:expr) => {
        $value.unwrap_or_else(|| $default)
    };
    ($value:expr) => {
        $value
    };
}

/// How a setting's value is written on a command line (what its clap
/// parser reads back).
pub trait FlagValue {
    fn flag_value(&self) -> OsString;
}

macro_rules! flag_value_by_display {
    ($($ty:ty),*) => {
        $(impl FlagValue for $ty {
            fn flag_value(&self) -> OsString {
                self.to_string().into()
            }
        })*
    };
}

flag_value_by_display!(String, u16, u32, usize, bool, Ipv4Addr, Ipv6Addr, SocketAddr);

impl FlagValue for PathBuf {
    fn flag_value(&self) -> OsString {
        self.clone().into_os_string()
    }
}

impl FlagValue for Duration {
    fn flag_value(&self) -> OsString {
        mesh_admin::duration::format(*self).into()
    }
}

/// `--<field in kebab-case>=<value>`.
pub fn flag(field: &str, value: &impl FlagValue) -> OsString {
    let mut arg = OsString::from(format!("--{}=", field.replace('_', "-")));
    arg.push(value.flag_value());
    arg
}
