//! The body tape against the strict `Value` parser it replaced: for any bytes, both accept or
//! both refuse (duplicate member names included), and an accepted document is the same `Value`
//! either way. A difference would be a parser differential inside finguard itself: the schema
//! judging one reading of the body while body-bound authorization reads another.
#![no_main]
use finguard::json::parse_strict;
use finguard::tape::Tape;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tape = Tape::parse(data);
    let strict = parse_strict(data);
    match (&tape, &strict) {
        (Ok(tape), Ok(value)) => assert_eq!(&tape.to_value(), value, "same document"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "tape {} but strict parse {}",
            if tape.is_ok() { "accepts" } else { "refuses" },
            if strict.is_ok() { "accepts" } else { "refuses" }
        ),
    }
});
