//! Bounds on SQL text that keep a crafted statement from holding a core or
//! overflowing a stack, for every statement tracklake parses (queries and
//! Athena DDL alike).

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// How deep the SQL parser may nest: deeper than any real query, and a
/// bound on the work of inputs crafted to make the parser backtrack (the
/// shapes known to take it exponential time are fixed in the patched
/// sqlparser, vendor/README.md; this caps what may remain).
pub const RECURSION_LIMIT: usize = 30;

/// How many operators and keywords a statement may hold. A chain such as
/// `a OR b OR …` or `1 + 1 + …` does not nest in the parser, but becomes a
/// tree as deep as it is long, and DataFusion walks (and clones) such trees
/// recursively: tens of thousands of terms overflow a thread's stack and
/// abort the process (apache/datafusion#22936). Lists (`IN (…)`, `VALUES`,
/// select lists) are separated by commas and do not count.
pub const MAX_OPERATORS: usize = 1_000;

/// Refuses `sql` when it holds more than [`MAX_OPERATORS`] operators and
/// keywords. Tokenizing is linear; text that does not tokenize is left for
/// the parser to refuse with its own message.
pub fn check_size(sql: &str) -> Result<(), String> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|t| is_operator(t)).count();
    if operators > MAX_OPERATORS {
        return Err(format!(
            "the statement is too complex: {operators} operators and keywords, at most {MAX_OPERATORS} are taken — write a long OR chain as `column IN (…)`"
        ));
    }
    Ok(())
}

fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => w.keyword != Keyword::NoKeyword && w.quote_style.is_none(),
        Token::Whitespace(_)
        | Token::Comma
        | Token::Period
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::SemiColon
        | Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::EOF => false,
        // Other literals (national, hex, dollar-quoted strings …) are rare
        // enough that counting them too costs nothing real.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_chains_are_refused_and_lists_are_not() {
        let chain = |n: usize| {
            format!(
                "SELECT count(*) FROM events WHERE {}",
                vec!["x = 1"; n].join(" OR ")
            )
        };
        // Each term is one `=` and one OR.
        assert!(check_size(&chain(490)).is_ok());
        let refused = check_size(&chain(550)).unwrap_err();
        assert!(refused.contains("at most 1000"), "{refused}");
        let list = format!(
            "SELECT * FROM events WHERE user_id IN ({})",
            vec!["'u1', 42"; 50_000].join(", ")
        );
        assert!(check_size(&list).is_ok());
        // Quoted names that happen to be keywords are names.
        assert!(check_size(&format!("SELECT {}", vec!["\"select\""; 5_000].join(", "))).is_ok());
    }
}
