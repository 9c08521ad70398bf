<?php

declare(strict_types=1);

namespace CallbookExample\Tests;

use Callbook\Callbook;
use Callbook\Tests\FakeCalcom;
use Callbook\Tests\Fixture;
use PHPUnit\Framework\TestCase;

/**
 * The example endpoint over real HTTP: `php -S` on a free loopback port,
 * signed and unsigned requests, anonymous and known callers booking,
 * cancelling and moving, malformed bodies (4xx, nothing written), and
 * Cal.com's webhook per company. Cal.com is core's fake (the agent asks it
 * for free starts before a move).
 */
final class WebhookTest extends TestCase
{
    private const KEY = 'key_retell_test';
    private const CALCOM_SECRET = 'whsec_example';

    /** @var resource */
    private static $server;
    private static string $base;
    private static string $url;
    private static string $db;
    private static ?FakeCalcom $calcom = null;

    public static function setUpBeforeClass(): void
    {
        self::$db = Fixture::path();
        self::$calcom = new FakeCalcom();
        $directory = Fixture::DIRECTORY;
        $directory['companies'][0] += ['calcom_api_base' => self::$calcom->url, 'calcom_webhook_secret' => self::CALCOM_SECRET];
        (new Callbook(self::$db, ['horizon_days' => 40000]))->import($directory);
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        $address = stream_socket_get_name($probe, false);
        fclose($probe);
        // The test books in 2099 (always in the future): past the default 365-day horizon.
        $env = ['CALLBOOK_DB' => self::$db, 'RETELL_API_KEY' => self::KEY, 'CALLBOOK_HORIZON_DAYS' => '40000'] + getenv();
        self::$server = proc_open(
            [PHP_BINARY, '-d', 'ffi.enable=1', '-S', $address, 'index.php'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
            $pipes,
            dirname(__DIR__),
            $env,
        );
        self::$base = "http://$address";
        self::$url = self::$base . '/retell/function';
        for ($i = 0; $i < 100; $i++) {
            $socket = @stream_socket_client("tcp://$address", $errno, $error, 0.1);
            if ($socket !== false) {
                fclose($socket);
                return;
            }
            usleep(50_000);
        }
        self::fail("php -S did not start on $address");
    }

    public static function tearDownAfterClass(): void
    {
        proc_terminate(self::$server);
        proc_close(self::$server);
        self::$calcom = null; // its stdin closes: it exits
        Fixture::cleanup();
    }

    private static function sign(string $body, string $key = self::KEY, ?int $ms = null): string
    {
        $ms ??= (int) floor(microtime(true) * 1000);
        return "v=$ms,d=" . hash_hmac('sha256', $body . $ms, $key);
    }

    /** @return array{int, array} */
    private static function post(string $body, ?string $signature, ?string $url = null, string $header = 'x-retell-signature'): array
    {
        $headers = "Content-Type: application/json\r\n" . ($signature === null ? '' : "$header: $signature\r\n");
        $context = stream_context_create(['http' => ['method' => 'POST', 'header' => $headers, 'content' => $body,
            'ignore_errors' => true, 'timeout' => 10]]);
        $answer = file_get_contents($url ?? self::$url, false, $context);
        $status = (int) explode(' ', $http_response_header[0] ?? 'HTTP/1.1 0')[1];
        return [$status, json_decode((string) $answer, true) ?? ['raw' => $answer]];
    }

    private static function call(string $id, string $from): array
    {
        return ['call_id' => $id, 'call_type' => 'phone_call', 'direction' => 'inbound', 'from_number' => $from, 'to_number' => '+49301234567'];
    }

    private static function counts(): array
    {
        $db = new \PDO('sqlite:' . self::$db);
        $count = static fn (string $table): int => (int) $db->query("SELECT COUNT(*) FROM $table")->fetchColumn();
        return ['calls' => $count('calls'), 'customers' => $count('customers'), 'appointments' => $count('appointments')];
    }

    public function testSignedRequestsBookAndAnswerWithASentence(): void
    {
        $known = json_encode(['name' => 'book_appointment', 'call' => self::call('call_k', '+49 151 2345678'),
            'args' => ['customer_name' => 'Jürgen Müller', 'date' => '2099-01-08', 'time' => '14:30']]);
        [$status, $a] = self::post($known, self::sign($known));
        $this->assertSame([200, true], [$status, $a['ok']], json_encode($a));
        // The branch is in Germany: the agent speaks German.
        $this->assertSame('Ihr Termin ist gebucht: Donnerstag, 8. Januar um 14:30 Uhr. Wir freuen uns auf Sie.', $a['message']);
        $this->assertIsInt($a['appointment_id']);
        [, $again] = self::post($known, self::sign($known));
        $this->assertSame($a['appointment_id'], $again['appointment_id'], 'Retell retries: the same appointment');

        $anon = json_encode(['name' => 'bookAppointment', 'call' => self::call('call_a', 'anonymous'),
            'args' => ['customer_name' => 'José', 'start' => '2099-01-09T10:00:00Z']]);
        [$status, $b] = self::post($anon, self::sign($anon));
        $this->assertSame([200, true], [$status, $b['ok']]);
        // "Args only": the call id travels in the args.
        $argsOnly = json_encode(['call_id' => 'call_a', 'customer_name' => 'José', 'start' => '2099-01-10T10:00:00Z']);
        $this->assertTrue(self::post($argsOnly, self::sign($argsOnly))[1]['ok']);

        $stats = (new Callbook(self::$db, ['horizon_days' => 40000]))->stats();
        $this->assertSame(1, $stats['customers_known']);
        $this->assertSame(2, $stats['customers_anonymous'], 'an anonymous caller is never matched, even in the same call');

        // A domain refusal is 200 with ok:false, so the agent can say it.
        $past = json_encode(['name' => 'book_appointment', 'call' => self::call('call_k', '+49 151 2345678'),
            'args' => ['customer_name' => 'M', 'start' => '2001-01-01T10:00:00Z']]);
        [$status, $r] = self::post($past, self::sign($past));
        $this->assertSame([200, false, 'start_in_past'], [$status, $r['ok'], $r['code']]);
    }

    public function testBadSignaturesAndMalformedRequestsWriteNothing(): void
    {
        $before = self::counts();
        $good = json_encode(['name' => 'book_appointment', 'call' => self::call('call_x', '+49 170 1234567'),
            'args' => ['customer_name' => 'Eve', 'start' => '2099-02-01T10:00:00Z']]);
        $stale = (int) floor(microtime(true) * 1000) - 6 * 60 * 1000;
        $cases = [
            'no signature' => [$good, null, 401, 'bad_signature'],
            'wrong key' => [$good, self::sign($good, 'other_key'), 401, 'bad_signature'],
            'stale' => [$good, self::sign($good, self::KEY, $stale), 401, 'bad_signature'],
            'body changed after signing' => [str_replace('Eve', 'Mallory', $good), self::sign($good), 401, 'bad_signature'],
            'not JSON' => ['{"name":', self::sign('{"name":'), 400, 'malformed_json'],
            'a JSON list' => ['[1,2]', self::sign('[1,2]'), 400, 'malformed_json'],
            'unknown function' => [$u = json_encode(['name' => 'drop_tables', 'call' => self::call('call_x', '1'), 'args' => []]), self::sign($u), 400, 'unknown_function'],
            'no call id' => [$n = json_encode(['customer_name' => 'Eve', 'start' => '2099-02-01T10:00:00Z']), self::sign($n), 400, 'call_id_required'],
        ];
        foreach ($cases as $name => [$body, $signature, $status, $code]) {
            [$got, $answer] = self::post($body, $signature);
            $this->assertSame([$status, false, $code], [$got, $answer['ok'] ?? null, $answer['code'] ?? null], $name);
        }
        $this->assertSame($before, self::counts(), 'nothing written on 4xx');
        [$status, $ok] = self::post($good, self::sign($good));
        $this->assertSame([200, true], [$status, $ok['ok']], 'the same body, signed: booked');
    }

    private static function function(string $name, string $callId, string $from, array $args): array
    {
        $body = json_encode(['name' => $name, 'call' => self::call($callId, $from), 'args' => $args]);
        return self::post($body, self::sign($body));
    }

    public function testACallerMovesAndCancelsOverHttpAndAStrangerIsOfferedACallback(): void
    {
        [, $booked] = self::function('book_appointment', 'call_m1', '+49 170 5550001',
            ['customer_name' => 'Mia', 'date' => '2099-03-02', 'time' => '10:00']);
        $id = $booked['appointment_id'];
        $book = new Callbook(self::$db, ['horizon_days' => 40000]);

        // Another call from the same number: found, asked, moved.
        [$status, $found] = self::function('find_appointments', 'call_m2', '+491705550001', ['date' => '2099-03-02']);
        $this->assertSame([200, [$id]], [$status, array_column($found['appointments'], 'appointment_id')], json_encode($found));
        $move = ['appointment_id' => $id, 'new_date' => '2099-03-03', 'new_time' => '11:30'];
        [$status, $asked] = self::function('reschedule_appointment', 'call_m2', '+491705550001', $move);
        $this->assertSame([200, true, true], [$status, $asked['ok'], $asked['needs_confirmation']], json_encode($asked));
        $this->assertStringContainsString('11:30', $asked['message']);
        $this->assertSame([], $book->appointmentChanges($id)['changes'], 'the question writes nothing');
        [$status, $moved] = self::function('reschedule_appointment', 'call_m2', '+491705550001', $move + ['confirmed' => true]);
        $this->assertSame([200, true], [$status, $moved['ok']], json_encode($moved));
        $this->assertSame('2099-03-03T10:30:00Z', $book->findAppointments('call_m2')['appointments'][0]['starts_at']);

        // A withheld number: refused, nothing revealed, a callback offered.
        [$status, $stranger] = self::function('cancel_appointment', 'call_m3', 'anonymous', ['appointment_id' => $id, 'confirmed' => true]);
        $this->assertSame([200, false, 'caller_not_verified', true],
            [$status, $stranger['ok'], $stranger['code'], $stranger['offer_callback']]);

        // The "args only" form, the function named by the URL: cancelled, and Retell's retry answers the same.
        $args = json_encode(['call_id' => 'call_m1', 'appointment_id' => $id, 'confirmed' => true]);
        foreach (['cancelled', 'retried'] as $attempt) {
            [$status, $cancelled] = self::post($args, self::sign($args), self::$url . '/cancel_appointment');
            $this->assertSame([200, true], [$status, $cancelled['ok']], "$attempt: " . json_encode($cancelled));
        }
        $this->assertSame(['reschedule', 'cancel'], array_column($book->appointmentChanges($id)['changes'], 'kind'));
        $this->assertSame([], $book->findAppointments('call_m1')['appointments']);
    }

    public function testCalcomWebhookPerCompany(): void
    {
        $body = json_encode(['triggerEvent' => 'BOOKING_CREATED', 'createdAt' => gmdate('Y-m-d\TH:i:s\Z'), 'payload' => [
            'uid' => 'cal-example-1', 'bookingId' => 77, 'eventTypeId' => 123, 'startTime' => '2099-04-01T09:00:00Z',
            'endTime' => '2099-04-01T09:30:00Z', 'attendees' => [['name' => 'Online', 'email' => 'online@example.com']]]]);
        $deliver = static fn (string $secret, string $company = '1'): array =>
            self::post($body, hash_hmac('sha256', $body, $secret), self::$base . "/calcom/webhook/$company", 'X-Cal-Signature-256');
        [$status, $imported] = $deliver(self::CALCOM_SECRET);
        $this->assertSame([200, true, 'imported'], [$status, $imported['ok'], $imported['result']], json_encode($imported));
        [$status, $again] = $deliver(self::CALCOM_SECRET);
        $this->assertSame([200, 'already_applied'], [$status, $again['result']], 'Cal.com retries: held once');
        [$status, $bad] = $deliver('not_the_secret');
        $this->assertSame([401, 'bad_signature'], [$status, $bad['code']]);
        [$status, $other] = $deliver(self::CALCOM_SECRET, '9');
        $this->assertSame([404, 'company_not_found'], [$status, $other['code']]);
        $this->assertSame(404, self::post($body, null, self::$base . '/calcom/webhook/x')[0]);
    }
}
