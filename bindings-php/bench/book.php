<?php

// book() through FFI next to the same booking written by hand with PDO on
// SQLite, in the same run (in alternating blocks), on file databases: the same schema (callbook
// creates both files) and the same statements core's SQLite store runs for
// one booking (core/src/booking.rs, core/src/store/sqlite.rs), one
// BEGIN IMMEDIATE … COMMIT each, WAL with the same synchronous setting.
// Half the callers withhold their number, half are 1,000 regulars. Then the
// cost of one FFI round trip.
//
//   php bench/book.php [--quick]

declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';

use Callbook\Callbook;

$quick = in_array('--quick', $argv, true);
$n = $quick ? 500 : 5000;
$directory = [
    'companies' => [['id' => 1, 'name' => 'Bench GmbH']],
    'branches' => [['id' => 1, 'company_id' => 1, 'name' => 'HQ', 'timezone' => 'Europe/Berlin', 'country' => 'DE', 'phone_number' => '+4930123456']],
    'services' => [['id' => 1, 'company_id' => 1, 'name' => 'Slot', 'calcom_event_type_id' => 1, 'duration_minutes' => 30]],
];
$base = gmmktime(8, 0, 0, 1, 1, 2099);
$startOf = static fn (int $i): int => $base + $i * 1800;
$fromNumber = static fn (int $i): string => $i % 2 === 0 ? 'anonymous' : '+4915' . (10000000 + intdiv($i, 2) % 1000);
$dbTime = static fn (float $t): string => gmdate('Y-m-d H:i:s', (int) $t) . sprintf('.%06d', (int) round(fmod($t, 1.0) * 1e6) % 1000000);

/** A database with the directory and every call of the run (not timed). */
function prepare(string $file, string $sync, array $directory, int $n, callable $fromNumber): Callbook
{
    $book = new Callbook($file, ['synchronous' => $sync, 'horizon_days' => 40000]); // starts in 2099
    $calls = [];
    for ($i = 0; $i < $n; $i++) {
        $calls[] = ['retell_call_id' => "call_$i", 'company_id' => 1, 'branch_id' => 1, 'from_number' => $fromNumber($i)];
    }
    $book->import($directory + ['calls' => $calls]);
    return $book;
}

/** The booking transaction by hand: core's statements, in core's order. */
function handWritten(string $file, string $sync, callable $startOf, callable $dbTime): callable
{
    $db = new PDO("sqlite:$file", null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    $db->exec('PRAGMA journal_mode = WAL');
    $db->exec("PRAGMA synchronous = $sync");
    $db->exec('PRAGMA foreign_keys = ON');
    $db->exec('PRAGMA busy_timeout = 5000');
    $q = [
        'call' => $db->prepare('SELECT id, retell_call_id, company_id, branch_id, from_number, to_number, direction FROM calls WHERE retell_call_id = ?'),
        'branch' => $db->prepare('SELECT id, company_id, name, timezone, country, phone_number FROM branches WHERE id = ?'),
        'service' => $db->prepare('SELECT id, company_id, name, calcom_event_type_id, duration_minutes, capacity FROM services WHERE id = ?'),
        'byKey' => $db->prepare('SELECT id, customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, status, calcom_sync_status, '
            . 'sync_origin, metadata, calcom_v2_booking_id, calcom_v2_booking_uid, sync_error_code, sync_error_message, sync_attempt_count, '
            . 'sync_verified_at, requires_manual_review, manual_review_flagged_at, review_reason, review_resolved_at, review_resolved_by, '
            . 'review_note, idempotency_key, created_at, updated_at FROM appointments WHERE company_id = ? AND idempotency_key = ?'),
        'remembered' => $db->prepare('SELECT slots FROM call_availability WHERE call_id = ? AND service_id = ? AND day = ?'),
        'byPhone' => $db->prepare('SELECT id, company_id, name, email, phone, source, anonymity_reason, created_at, updated_at FROM customers '
            . 'WHERE company_id = ? AND phone = ? ORDER BY id LIMIT 1'),
        'customer' => $db->prepare('INSERT INTO customers (company_id, name, email, phone, source, anonymity_reason, created_at, updated_at) '
            . 'VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
        'appointment' => $db->prepare('INSERT INTO appointments (customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, '
            . 'status, calcom_sync_status, sync_origin, metadata, sync_attempt_count, requires_manual_review, manual_review_flagged_at, '
            . "review_reason, idempotency_key, booking_latency_us, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'confirmed', 'pending', "
            . "'retell', ?, 0, 0, NULL, NULL, ?, ?, ?, ?)"),
        'job' => $db->prepare('INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at, lease_token, '
            . "created_at, updated_at) VALUES (?, ?, 'calcom.create', 'available', 0, 4, ?, 0, ?, ?)"),
    ];
    $row = static function (PDOStatement $st, array $params): ?array {
        $st->execute($params);
        $r = $st->fetch(PDO::FETCH_ASSOC);
        $st->closeCursor();
        return $r === false ? null : $r;
    };
    return static function (int $i) use ($db, $q, $row, $startOf, $dbTime): void {
        $db->exec('BEGIN IMMEDIATE');
        try {
            $now = microtime(true);
            $nowS = $dbTime($now);
            $call = $row($q['call'], ["call_$i"]);
            $row($q['branch'], [$call['branch_id']]);
            $service = $row($q['service'], [1]);
            $starts = $startOf($i);
            $key = "cb-{$call['company_id']}-{$call['id']}-1-$starts";
            if ($row($q['byKey'], [$call['company_id'], $key]) !== null) {
                throw new RuntimeException('already booked');
            }
            $row($q['remembered'], [$call['id'], 1, gmdate('Y-m-d', $starts)]);
            $anonymous = $call['from_number'] === 'anonymous';
            $phone = $anonymous
                ? 'anonymous_' . (int) $now . '_' . substr(md5("Bench Caller{$call['id']}"), 0, 8)
                : $call['from_number'];
            $customer = $anonymous ? null : $row($q['byPhone'], [$call['company_id'], $phone]);
            if ($customer === null) {
                $q['customer']->execute([$call['company_id'], 'Bench Caller', null, $phone,
                    $anonymous ? 'retell_webhook_anonymous' : 'retell_webhook', $anonymous ? 'withheld_word' : null, $nowS, $nowS]);
                $customerId = (int) $db->lastInsertId();
            } else {
                $customerId = (int) $customer['id'];
            }
            $metadata = json_encode(['customer_name' => 'Bench Caller', 'customer_email' => null, 'customer_phone' => $phone]
                + ($anonymous ? ['anonymity_reason' => 'withheld_word'] : []));
            $ends = $starts + $service['duration_minutes'] * 60;
            // The latency callbook keeps with every booking, measured the same way.
            $latency = (int) round((microtime(true) - $now) * 1e6);
            $q['appointment']->execute([$customerId, $call['company_id'], $call['branch_id'], 1, $call['id'],
                $dbTime($starts), $dbTime($ends), $metadata, $key, $latency, $nowS, $nowS]);
            $q['job']->execute([(int) $db->lastInsertId(), $call['company_id'], $nowS, $nowS, $nowS]);
            $db->exec('COMMIT');
        } catch (Throwable $e) {
            $db->exec('ROLLBACK');
            throw $e;
        }
    };
}

/**
 * Runs both in alternating blocks (which goes first alternates too), so disk
 * and page-cache drift during the run hits both alike.
 *
 * @param array<string, callable> $runs label => fn(int $i)
 * @return array<string, array{rate: float, p50: float, p99: float}>
 */
function measure(array $runs, int $n, int $block = 50): array
{
    $lat = array_fill_keys(array_keys($runs), []);
    $busy = array_fill_keys(array_keys($runs), 0);
    $labels = array_keys($runs);
    for ($from = 0, $b = 0; $from < $n; $from += $block, $b++) {
        foreach ($b % 2 === 0 ? $labels : array_reverse($labels) as $label) {
            $t0 = hrtime(true);
            for ($i = $from; $i < min($from + $block, $n); $i++) {
                $t = hrtime(true);
                $runs[$label]($i);
                $lat[$label][] = (hrtime(true) - $t) / 1e3;
            }
            $busy[$label] += hrtime(true) - $t0;
        }
    }
    $result = [];
    foreach ($labels as $label) {
        sort($lat[$label]);
        $r = ['rate' => $n / ($busy[$label] / 1e9), 'p50' => $lat[$label][intdiv($n, 2)], 'p99' => $lat[$label][(int) floor($n * 0.99)]];
        printf("  %-38s %7.0f bookings/s   p50 %7.1f µs   p99 %8.1f µs\n", $label, $r['rate'], $r['p50'], $r['p99']);
        $result[$label] = $r;
    }
    return $result;
}

$dir = sys_get_temp_dir() . '/callbook-php-bench-' . bin2hex(random_bytes(4));
mkdir($dir);
$verdict = true;
foreach (['full', 'normal'] as $sync) {
    printf("\nPHP %s, %d bookings each, file databases, WAL, synchronous=%s\n", PHP_VERSION, $n, strtoupper($sync));
    $hand = prepare("$dir/hand-$sync.db", $sync, $directory, $n, $fromNumber);
    $hand->close();
    $ffi = prepare("$dir/ffi-$sync.db", $sync, $directory, $n, $fromNumber);
    $byHand = handWritten("$dir/hand-$sync.db", strtoupper($sync), $startOf, $dbTime);
    [$r1, $r2] = array_values(measure([
        'PDO, same SQL, by hand' => $byHand,
        'callbook book() through FFI' => static fn (int $i) => $ffi->book([
            'retell_call_id' => "call_$i", 'customer_name' => 'Bench Caller', 'service_id' => 1, 'start' => gmdate('Y-m-d\TH:i:s\Z', $startOf($i)),
        ]),
    ], $n));
    $ratio = $r2['rate'] / $r1['rate'];
    printf("  ratio FFI/PDO throughput: %.2fx (goal >= 1.0x%s), p50 %.2fx\n", $ratio, $sync === 'full' ? '' : ', informational', $r2['p50'] / $r1['p50']);
    $stats = $ffi->stats();
    if ($stats['appointments']['pending'] !== $n) {
        fwrite(STDERR, "FFI run booked {$stats['appointments']['pending']} of $n\n");
        exit(1);
    }
    if ($sync === 'full') {
        $verdict = $ratio >= 1.0;
    }
    $ffi->close();
}

// One FFI round trip: the full method (encode, call, copy, free, decode),
// and the bare crossing (callbook_free(NULL) does nothing).
$m = $quick ? 20000 : 200000;
$t = hrtime(true);
for ($i = 0; $i < $m; $i++) {
    Callbook::detectAnonymous('anonymous');
}
$method = (hrtime(true) - $t) / 1e3 / $m;
$raw = FFI::cdef((string) file_get_contents(__DIR__ . '/../ffi/callbook.h'), getenv('CALLBOOK_LIBRARY') ?: dirname(__DIR__, 2) . '/target/release/libcallbook.so');
$t = hrtime(true);
for ($i = 0; $i < $m; $i++) {
    $raw->callbook_free(null);
}
$bare = (hrtime(true) - $t) / 1e3 / $m;
printf("\nFFI round trip: Callbook::detectAnonymous() %.2f µs per call; a bare FFI call %.3f µs (%d calls each)\n", $method, $bare, $m);

array_map('unlink', glob("$dir/*") ?: []);
rmdir($dir);
printf("%s\n", $verdict ? 'goal met: book() through FFI >= hand-written PDO with synchronous=FULL' : 'goal NOT met with synchronous=FULL');
