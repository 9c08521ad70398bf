<?php
// The README's "Usage from PHP" example; tests/php/run runs it.
require __DIR__ . '/../../bindings-php/src/CallbookException.php'; // or Composer's autoload
require __DIR__ . '/../../bindings-php/src/Callbook.php';

use Callbook\Callbook;
use Callbook\CallbookException;

$db = sys_get_temp_dir() . '/callbook-quickstart-' . getmypid() . '.db';
$book = new Callbook($db); // finds target/release/libcallbook.so, or $options['library'], or env CALLBOOK_LIBRARY
$book->import([
    'companies' => [['id' => 1, 'name' => 'Salon Berlin', 'calcom_api_key' => 'cal_live_...']],
    'branches' => [['id' => 1, 'company_id' => 1, 'name' => 'Mitte', 'phone_number' => '+493012345678']],
    'services' => [['id' => 1, 'company_id' => 1, 'name' => 'Haircut', 'calcom_event_type_id' => 123, 'duration_minutes' => 30]],
]);
$book->registerCall(['retell_call_id' => 'call_1', 'from_number' => 'anonymous', 'to_number' => '+493012345678']);
$booking = $book->book(['retell_call_id' => 'call_1', 'customer_name' => 'Jane Doe', 'service_id' => 1,
    'date' => 'tomorrow', 'time' => '14:30']);
echo json_encode($booking), "\n"; // {"appointment_id":1,...,"anonymous":true,"customer_phone":"anonymous_...","status":"confirmed","calcom_sync_status":"pending"}

try {
    $book->book(['retell_call_id' => 'call_404', 'customer_name' => 'Max', 'service_id' => 1, 'start' => gmdate('Y-m-d\\T13:00:00\\Z', strtotime('+7 days'))]);
} catch (CallbookException $e) {
    echo "$e->errorCode: {$e->getMessage()}\n"; // call_not_found: no call with Retell id "call_404" is registered
}
var_dump(Callbook::detectAnonymous('+49 151 2345678')); // ['anonymous' => false, 'reason' => null]

// The caller changes their mind in the same call: cancelled (with a real caller id, any later call from that number may too).
$cancel = $book->cancelAppointment(['retell_call_id' => 'call_1', 'appointment_id' => $booking['appointment_id'], 'confirmed' => true]);
echo json_encode($cancel['change']), "\n"; // {"appointment_id":1,"kind":"cancel",...,"status":"cancelled","calcom_sync_status":"pending"}

// Later, or in a worker process: push pending appointments to Cal.com.
// $book->syncOnce(['calcom_url' => 'https://api.cal.com']);

$book->close();
array_map('unlink', glob("$db*"));
exit($booking['anonymous'] && $booking['status'] === 'confirmed' && isset($e) && $e->errorCode === 'call_not_found'
    && $cancel['change']['status'] === 'cancelled' ? 0 : 1);
