//! Outputs of a run: the results file ([`json`]), the terminal table
//! ([`table`]) and the self-contained HTML comparison page ([`html`]).

pub mod html;
pub mod json;
pub mod table;
