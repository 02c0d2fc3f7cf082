//! state.json loading: a corrupt or hostile state file is an error, never a panic, and a
//! record that loads serializes back to one that loads the same.
#![no_main]

use karton_runtime::state::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = serde_json::from_slice::<Record>(data) else { return };
    let _ = rec.oci();
    let _ = rec.hook_state_json();
    let text = serde_json::to_string(&rec).expect("a loaded record serializes");
    let again: Record = serde_json::from_str(&text).expect("a saved record loads");
    assert_eq!(serde_json::to_string(&again).expect("serializes"), text);
    let _ = karton_runtime::state::validate_id(&rec.id);
});
