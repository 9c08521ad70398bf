//! The README's example: book a known caller for tomorrow afternoon.

use callbook::{BookingRequest, Callbook, ImportData};

fn main() -> callbook::Result<()> {
    let dir = std::env::temp_dir().join(format!("callbook-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| callbook::Error::Storage(e.to_string()))?;
    let book = Callbook::open(dir.join("callbook.db"))?; // SQLite, WAL, synchronous=FULL
    book.import(&ImportData::from_json(
        r#"{
        "companies": [{"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_..."}],
        "branches":  [{"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin",
                       "country": "DE", "phone_number": "+49 30 1234567"}],
        "services":  [{"id": 1, "company_id": 1, "name": "Haircut",
                       "calcom_event_type_id": 123, "duration_minutes": 30}],
        "calls":     [{"retell_call_id": "call_abc", "to_number": "+49301234567",
                       "from_number": "0151 2345678"}]
    }"#,
    )?)?;
    let booking = book.book(&BookingRequest {
        retell_call_id: "call_abc".into(),
        customer_name: "Jürgen Müller".into(),
        customer_email: Some("juergen at example dot com".into()), // spoken form, normalised
        date: Some("morgen".into()),                               // branch time zone
        time: Some("14:30".into()),
        ..Default::default()
    })?;
    println!("{}", serde_json::to_string(&booking)?);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
