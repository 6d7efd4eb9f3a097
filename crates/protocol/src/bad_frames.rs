//! The bad text frames a client can send, each with the error code it gets:
//! one table for the function's tests and the end-to-end tests, so both
//! check the same cases.

use crate::ErrorCode;

/// One bad frame and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFrame {
    /// What is wrong with it, for test messages.
    pub case: &'static str,
    /// The route API Gateway selects for it with the project's routes
    /// (`$request.body.action`, `$default` when that names no route).
    pub route: &'static str,
    /// The frame's text.
    pub text: &'static str,
    /// The code of the error frame the sender gets.
    pub code: ErrorCode,
}

/// Every bad text frame that fits in one WebSocket frame. (Data over
/// [`crate::MAX_DATA_BYTES`] and binary frames have their own tests: they
/// need a large or a binary message.)
pub const BAD_FRAMES: &[BadFrame] = &[
    BadFrame {
        case: "invalid JSON",
        route: crate::routes::DEFAULT,
        text: "{not json",
        code: ErrorCode::InvalidJson,
    },
    BadFrame {
        case: "empty frame",
        route: crate::routes::DEFAULT,
        text: "",
        code: ErrorCode::InvalidJson,
    },
    BadFrame {
        case: "not an object (array)",
        route: crate::routes::DEFAULT,
        text: "[1, 2]",
        code: ErrorCode::NotAnObject,
    },
    BadFrame {
        case: "not an object (string)",
        route: crate::routes::DEFAULT,
        text: "\"ping\"",
        code: ErrorCode::NotAnObject,
    },
    BadFrame {
        case: "missing action",
        route: crate::routes::DEFAULT,
        text: r#"{"data": 1}"#,
        code: ErrorCode::MissingAction,
    },
    BadFrame {
        case: "non-string action",
        route: crate::routes::DEFAULT,
        text: r#"{"action": 7}"#,
        code: ErrorCode::MissingAction,
    },
    BadFrame {
        case: "unknown action",
        route: crate::routes::DEFAULT,
        text: r#"{"action": "nope"}"#,
        code: ErrorCode::UnknownAction,
    },
    BadFrame {
        case: "missing data",
        route: crate::routes::SEND_MESSAGE,
        text: r#"{"action": "sendmessage"}"#,
        code: ErrorCode::MissingData,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The table agrees with the parser the function uses.
    #[test]
    fn each_bad_frame_fails_parsing_or_validation_with_its_code() {
        for frame in BAD_FRAMES {
            let code = match crate::parse_client_frame(frame.text) {
                Err(error) => error.code,
                Ok(parsed) if parsed.action == crate::routes::SEND_MESSAGE => {
                    match crate::check_message_data(parsed.data.as_ref()) {
                        Err(error) => error.code,
                        Ok(_) => panic!("{}: accepted", frame.case),
                    }
                }
                Ok(parsed) if crate::ACTIONS.contains(&parsed.action.as_str()) => {
                    panic!("{}: accepted", frame.case)
                }
                Ok(parsed) => crate::unknown_action(&parsed.action).code,
            };
            assert_eq!(code, frame.code, "{}", frame.case);
        }
    }
}
