<?php

declare(strict_types=1);

namespace CallbookExample\Tests;

use Callbook\Callbook;
use Callbook\Tests\Fixture;
use PHPUnit\Framework\TestCase;

/**
 * The example endpoint over real HTTP: `php -S` on a free loopback port,
 * signed and unsigned requests, anonymous and known callers, malformed
 * bodies (4xx, nothing written).
 */
final class WebhookTest extends TestCase
{
    private const KEY = 'key_retell_test';

    /** @var resource */
    private static $server;
    private static string $url;
    private static string $db;

    public static function setUpBeforeClass(): void
    {
        self::$db = Fixture::path();
        (new Callbook(self::$db, ['horizon_days' => 40000]))->import(Fixture::DIRECTORY);
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
        self::$url = "http://$address/retell/function";
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
        Fixture::cleanup();
    }

    private static function sign(string $body, string $key = self::KEY, ?int $ms = null): string
    {
        $ms ??= (int) floor(microtime(true) * 1000);
        return "v=$ms,d=" . hash_hmac('sha256', $body . $ms, $key);
    }

    /** @return array{int, array} */
    private static function post(string $body, ?string $signature): array
    {
        $headers = "Content-Type: application/json\r\n" . ($signature === null ? '' : "x-retell-signature: $signature\r\n");
        $context = stream_context_create(['http' => ['method' => 'POST', 'header' => $headers, 'content' => $body,
            'ignore_errors' => true, 'timeout' => 10]]);
        $answer = file_get_contents(self::$url, false, $context);
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
        $this->assertSame("You're booked for Thursday, 8 January at 14:30. We look forward to seeing you.", $a['message']);
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
}
