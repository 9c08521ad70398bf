<?php

declare(strict_types=1);

namespace Callbook\Tests;

/**
 * core's loopback fake Cal.com, run as the `fake_calcom` example of
 * callbook-c (env CALLBOOK_FAKE_CALCOM, else the debug build under target/):
 * its URL is the first line it prints; commands go to its stdin, one answer
 * line each. It exits when its stdin closes.
 */
final class FakeCalcom
{
    public readonly string $url;
    /** @var resource */
    private $process;
    /** @var array<int, resource> */
    private array $pipes;

    /** @param list<string> $eventTypes the event types it holds, `ID:LENGTH_MINUTES` */
    public function __construct(array $eventTypes = ['123:30'])
    {
        $env = getenv('CALLBOOK_FAKE_CALCOM');
        $binary = ($env !== false && $env !== '') ? $env : dirname(__DIR__, 2) . '/target/debug/examples/fake_calcom';
        if (!is_executable($binary)) {
            throw new \RuntimeException("no fake Cal.com at $binary (cargo build -p callbook-c --example fake_calcom)");
        }
        $process = proc_open([$binary, ...$eventTypes], [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => STDERR], $pipes);
        if ($process === false) {
            throw new \RuntimeException("cannot start $binary");
        }
        [$this->process, $this->pipes] = [$process, $pipes];
        $this->url = trim((string) fgets($this->pipes[1]));
        if (!str_starts_with($this->url, 'http://127.0.0.1:')) {
            throw new \RuntimeException("fake Cal.com said {$this->url}");
        }
    }

    /** Sends one command and returns its answer line. */
    public function send(string $command): string
    {
        fwrite($this->pipes[0], "$command\n");
        fflush($this->pipes[0]);
        return trim((string) fgets($this->pipes[1]));
    }

    /** `['requests', 'bookings', 'live_bookings', 'creates', 'duplicated_keys', 'rate_limited']` */
    public function stats(): array
    {
        return json_decode($this->send('stats'), true, 512, JSON_THROW_ON_ERROR);
    }

    public function bookings(): array
    {
        return json_decode($this->send('bookings'), true, 512, JSON_THROW_ON_ERROR);
    }

    /** The bookings not cancelled. */
    public function liveBookings(): array
    {
        return array_values(array_filter($this->bookings(), static fn (array $b): bool => $b['status'] !== 'cancelled'));
    }

    /**
     * A booking made on Cal.com's own page (no callbook key), as core's
     * `FakeCalcom::add_booking_elsewhere`: its uid.
     *
     * @param array $attendee `['name' =>, 'email'?, 'phoneNumber'?]`
     */
    public function addBookingElsewhere(int $eventType, string $start, array $attendee): string
    {
        $uid = $this->send("elsewhere $eventType $start " . json_encode($attendee, JSON_THROW_ON_ERROR));
        if ($uid === '' || str_starts_with($uid, 'error')) {
            throw new \RuntimeException("fake Cal.com: $uid");
        }
        return $uid;
    }

    public function __destruct()
    {
        fclose($this->pipes[0]);
        fclose($this->pipes[1]);
        proc_close($this->process);
    }
}
