<?php

declare(strict_types=1);

namespace Callbook\Tests;

use Callbook\Callbook;
use Callbook\CallbookException;
use PHPUnit\Framework\TestCase;

/**
 * The rest of the call from PHP, against core's loopback fake Cal.com: a
 * verified caller finds, moves and cancels their own appointment (the sync
 * carries each change to Cal.com), a withheld number is refused and offered
 * a callback, callbacks are filed and done, signed Retell function calls are
 * answered by the agent, Cal.com's webhook and pull hold bookings made in
 * Cal.com, and drift finds what differs.
 */
final class JourneyTest extends TestCase
{
    private const RETELL_KEY = 'key_retell_php';
    private const WEBHOOK_SECRET = 'whsec_php';

    private FakeCalcom $calcom;
    private Callbook $book;

    protected function setUp(): void
    {
        $this->calcom = new FakeCalcom();
        $this->book = new Callbook(Fixture::path(), ['synchronous' => 'normal', 'horizon_days' => 40000,
            'retell_api_key' => self::RETELL_KEY]);
        $directory = Fixture::DIRECTORY;
        $directory['companies'][0] += ['calcom_api_base' => $this->calcom->url, 'calcom_webhook_secret' => self::WEBHOOK_SECRET];
        $this->book->import($directory + ['calls' => [
            Fixture::call('call_max', '+49 151 2345678'),
            Fixture::call('call_max_again', '0151 2345678'),
            Fixture::call('call_withheld', 'anonymous'),
        ]]);
    }

    protected function tearDown(): void
    {
        $this->book->close();
        unset($this->calcom);
        Fixture::cleanup();
    }

    private function sync(): array
    {
        return $this->book->syncOnce(['calcom_url' => $this->calcom->url, 'backoff_ms' => [0]]);
    }

    private function bookMax(string $start): int
    {
        return $this->book->book(['retell_call_id' => 'call_max', 'customer_name' => 'Max', 'service_id' => 1, 'start' => $start])['appointment_id'];
    }

    private static function refused(callable $f): CallbookException
    {
        try {
            $f();
        } catch (CallbookException $e) {
            return $e;
        }
        self::fail('expected a CallbookException');
    }

    /** @return array{int, array} the agent's HTTP status and body */
    private function agent(string $function, string $callId, string $from, array $args, string $key = self::RETELL_KEY): array
    {
        $body = json_encode(['name' => $function, 'call' => ['call_id' => $callId, 'from_number' => $from,
            'to_number' => '+49301234567', 'direction' => 'inbound'], 'args' => (object) $args], JSON_THROW_ON_ERROR);
        $ms = (int) floor(microtime(true) * 1000);
        $answer = $this->book->agentAnswer($body, "v=$ms,d=" . hash_hmac('sha256', $body . $ms, $key));
        return [$answer['http_status'], $answer['body']];
    }

    /** A Cal.com delivery, each created a second after the one before (a later one is never stale). */
    private function hook(string $trigger, array $payload): string
    {
        static $deliveries = 0;
        $createdAt = gmdate('Y-m-d\TH:i:s\Z', time() - 600 + ++$deliveries);
        return json_encode(['triggerEvent' => $trigger, 'createdAt' => $createdAt, 'payload' => $payload], JSON_THROW_ON_ERROR);
    }

    private function deliver(string $body, int $company = 1, string $secret = self::WEBHOOK_SECRET): array
    {
        return $this->book->calcomWebhook($company, $body, hash_hmac('sha256', $body, $secret));
    }

    public function testAVerifiedCallerMovesAndCancelsAndEachChangeReachesCalcom(): void
    {
        $id = $this->bookMax('2099-01-08T13:00:00Z');
        $this->assertSame(1, $this->sync()['synced']);
        $firstUid = $this->calcom->liveBookings()[0]['uid'];

        // Another call from the same number (written differently) is the same customer.
        $context = $this->book->callContext('call_max_again');
        $this->assertSame([true, 1, 'Europe/Berlin'], [$context['known_caller'], $context['upcoming'], $context['time_zone']]);
        $this->assertSame([['service_id' => 1, 'name' => 'Haircut', 'duration_minutes' => 30]], $context['services']);
        $found = $this->book->findAppointments('call_max_again', '2099-01-08')['appointments'];
        $this->assertSame([$id], array_column($found, 'id'));
        $this->assertSame([], $this->book->findAppointments('call_max_again', '2099-01-09')['appointments']);
        $this->assertSame([$id], array_column($this->book->appointmentsByPhone(1, '+491512345678')['appointments'], 'id'));

        // Two steps: the question writes nothing, the confirmation moves it; the sync moves Cal.com's booking.
        $move = ['retell_call_id' => 'call_max_again', 'date' => '2099-01-08', 'new_date' => '2099-01-09', 'new_time' => '11:00'];
        $asked = $this->book->rescheduleAppointment($move)['change'];
        $this->assertSame([true, '2099-01-09T10:00:00Z'], [$asked['needs_confirmation'], $asked['starts_at']]);
        $this->assertSame([], $this->book->appointmentChanges($id)['changes'], 'nothing written before the confirmation');
        $moved = $this->book->rescheduleAppointment($move + ['confirmed' => true, 'reason' => 'dentist'])['change'];
        $this->assertSame([$id, 'reschedule', false, '2099-01-08T13:00:00Z'],
            [$moved['appointment_id'], $moved['kind'], $moved['needs_confirmation'], $moved['previous_starts_at']]);
        $this->assertSame(1, $this->sync()['synced']);
        $live = $this->calcom->liveBookings();
        $this->assertCount(1, $live);
        $this->assertSame('2099-01-09T10:00:00.000Z', $live[0]['start']);
        $this->assertNotSame($firstUid, $live[0]['uid'], 'Cal.com moves a booking to a new uid');

        // A second move works from the new uid (the original system kept the old one and failed here).
        $this->book->rescheduleAppointment(['retell_call_id' => 'call_max', 'appointment_id' => $id,
            'new_start' => '2099-01-10T09:00:00Z', 'confirmed' => true]);
        $this->assertSame(1, $this->sync()['synced']);
        $live = $this->calcom->liveBookings();
        $this->assertSame(['2099-01-10T09:00:00.000Z'], array_column($live, 'start'));
        $this->assertCount(3, $this->calcom->bookings(), 'each move: a new booking, the old one cancelled');

        $changes = $this->book->appointmentChanges($id)['changes'];
        $this->assertSame(['reschedule', 'reschedule'], array_column($changes, 'kind'));
        $this->assertSame(['call', '2099-01-08T13:00:00Z', '2099-01-09T10:00:00Z', 'dentist'],
            [$changes[0]['by'], $changes[0]['from_starts_at'], $changes[0]['to_starts_at'], $changes[0]['reason']]);

        // Cancel, retried by Retell: the same answer, one cancel in Cal.com.
        $cancel = ['retell_call_id' => 'call_max', 'appointment_id' => $id, 'reason' => 'ill', 'confirmed' => true];
        $cancelled = $this->book->cancelAppointment($cancel)['change'];
        $this->assertSame(['cancel', 'cancelled', false], [$cancelled['kind'], $cancelled['status'], $cancelled['repeated']]);
        $this->assertTrue($this->book->cancelAppointment($cancel)['change']['repeated']);
        $this->assertSame(1, $this->sync()['synced']);
        $this->assertSame([], $this->calcom->liveBookings());
        $this->assertSame([1, 0], [$this->calcom->stats()['creates'], $this->calcom->stats()['duplicated_keys']]);
        $this->assertSame(['reschedule', 'reschedule', 'cancel'], array_column($this->book->appointmentChanges($id)['changes'], 'kind'));
        $this->assertSame([], $this->book->findAppointments('call_max')['appointments']);
    }

    public function testACancelBeforeTheFirstSyncSendsNothingToCalcom(): void
    {
        $id = $this->bookMax('2099-01-08T13:00:00Z');
        $change = $this->book->cancelAppointment(['retell_call_id' => 'call_max', 'appointment_id' => $id, 'confirmed' => true])['change'];
        $this->assertSame('cancelled', $change['status']);
        $this->sync();
        $this->assertSame([0, 0], [$this->calcom->stats()['creates'], count($this->calcom->bookings())]);
    }

    public function testSeveralOnTheDayNeedTheTimeAndAnOperatorMayForcePastThePolicy(): void
    {
        $this->bookMax('2099-01-08T09:00:00Z');
        $this->bookMax('2099-01-08T13:00:00Z');
        $e = self::refused(fn () => $this->book->cancelAppointment(['retell_call_id' => 'call_max', 'date' => '2099-01-08', 'confirmed' => true]));
        $this->assertSame(['multiple_found', 3], [$e->errorCode, $e->status]);
        $this->assertCount(2, $e->details['appointments']);
        $one = $this->book->cancelAppointment(['retell_call_id' => 'call_max', 'date' => '2099-01-08', 'time' => '14:00']);
        $this->assertTrue($one['change']['needs_confirmation']);

        $this->book->import(['companies' => [Fixture::DIRECTORY['companies'][0] + ['policy' => ['max_reschedules' => 0]]]]);
        $move = ['retell_call_id' => 'call_max', 'date' => '2099-01-08', 'time' => '10:00', 'new_start' => '2099-01-11T09:00:00Z', 'confirmed' => true];
        $this->assertSame('reschedule_limit_reached', self::refused(fn () => $this->book->rescheduleAppointment($move))->errorCode);
        unset($move['retell_call_id'], $move['date'], $move['time']);
        $id = $this->book->findAppointments('call_max', '2099-01-08')['appointments'][0]['id'];
        $forced = $this->book->rescheduleAppointment($move + ['operator' => 'Ada', 'appointment_id' => $id, 'force' => true])['change'];
        $this->assertSame('2099-01-11T09:00:00Z', $forced['starts_at']);
        $this->assertSame(['operator', 'Ada'], [$this->book->appointmentChanges($id)['changes'][0]['by'], $this->book->appointmentChanges($id)['changes'][0]['name']]);
    }

    public function testAWithheldNumberIsRefusedAndOfferedACallbackThatIsMarkedDone(): void
    {
        $id = $this->bookMax('2099-01-08T13:00:00Z');
        foreach ([
            fn () => $this->book->findAppointments('call_withheld'),
            fn () => $this->book->cancelAppointment(['retell_call_id' => 'call_withheld', 'appointment_id' => $id, 'confirmed' => true]),
            fn () => $this->book->rescheduleAppointment(['retell_call_id' => 'call_withheld', 'appointment_id' => $id,
                'new_start' => '2099-01-09T10:00:00Z', 'confirmed' => true]),
        ] as $attempt) {
            $e = self::refused($attempt);
            $this->assertSame(['caller_not_verified', 3], [$e->errorCode, $e->status]);
        }
        $this->assertSame([], $this->book->appointmentChanges($id)['changes'], 'nothing changed');
        $this->assertFalse($this->book->callContext('call_withheld')['known_caller']);

        // By voice: refused with the offer of a callback, nothing revealed.
        [$status, $body] = $this->agent('cancel_appointment', 'call_withheld', 'anonymous', ['date' => '2099-01-08', 'confirmed' => true]);
        $this->assertSame([200, false, 'caller_not_verified', true], [$status, $body['ok'], $body['code'], $body['offer_callback']]);
        $this->assertArrayNotHasKey('appointments', $body);
        [$status, $body] = $this->agent('request_callback', 'call_withheld', 'anonymous',
            ['customer_name' => 'Max', 'phone' => '0151 2345678', 'reason' => 'cancel Thursday']);
        $this->assertSame([200, true], [$status, $body['ok']], json_encode($body));

        $filed = $this->book->requestCallback(['retell_call_id' => 'call_withheld', 'customer_name' => 'Jane', 'phone' => '030 9876543'])['callback'];
        $this->assertSame(['+49309876543', 'open'], [$filed['phone'], $filed['status']]);
        $open = $this->book->callbackList()['callbacks'];
        $this->assertSame([$body['callback_id'], $filed['id']], array_column($open, 'id'));
        $this->assertSame(['+491512345678', 'cancel Thursday'], [$open[0]['phone'], $open[0]['reason']]);
        $done = $this->book->callbackDone($filed['id'], 'Ada')['callback'];
        $this->assertSame(['done', 'Ada'], [$done['status'], $done['done_by']]);
        $this->assertSame([$body['callback_id']], array_column($this->book->callbackList()['callbacks'], 'id'));
        $this->assertSame([$filed['id']], array_column($this->book->callbackList('done')['callbacks'], 'id'));
        $this->assertCount(2, $this->book->callbackList('all')['callbacks']);
        $this->assertSame('operator', $this->book->callbackDone($body['callback_id'])['callback']['done_by']);
        $this->assertSame('invalid_argument', self::refused(fn () => $this->book->callbackList('later'))->errorCode);
        $this->assertSame('callback_not_found', self::refused(fn () => $this->book->callbackDone(999))->errorCode);
        $this->assertSame('customer_name_required', self::refused(fn () => $this->book->requestCallback(
            ['retell_call_id' => 'call_withheld', 'customer_name' => ' ']))->errorCode);
    }

    public function testTheAgentAnswersSignedFunctionCallsAsServeDoes(): void
    {
        [$status, $context] = $this->agent('get_call_context', 'call_new', '+49 151 2345678', []);
        $this->assertSame([200, true, false], [$status, $context['ok'], $context['known_caller']]);
        $this->assertNotSame('', $context['message']);
        [$status, $slots] = $this->agent('check_availability', 'call_new', '+49 151 2345678', ['date' => '2099-01-08']);
        $this->assertSame([200, true], [$status, $slots['ok']], json_encode($slots));
        [$status, $booked] = $this->agent('book_appointment', 'call_new', '+49 151 2345678',
            ['customer_name' => 'Max', 'date' => '2099-01-08', 'time' => '10:00']);
        $this->assertSame([200, true], [$status, $booked['ok']], json_encode($booked));
        [, $found] = $this->agent('find_appointments', 'call_new', '+49 151 2345678', []);
        $this->assertSame([$booked['appointment_id']], array_column($found['appointments'], 'appointment_id'));
        [, $asked] = $this->agent('reschedule_appointment', 'call_new', '+49 151 2345678',
            ['appointment_id' => $booked['appointment_id'], 'new_date' => '2099-01-08', 'new_time' => '15:00']);
        $this->assertSame([true, true], [$asked['ok'], $asked['needs_confirmation']], json_encode($asked));
        [, $moved] = $this->agent('rescheduleAppointment', 'call_new', '+49 151 2345678',
            ['appointment_id' => $booked['appointment_id'], 'new_date' => '2099-01-08', 'new_time' => '15:00', 'confirmed' => true]);
        $this->assertTrue($moved['ok'], json_encode($moved));
        [, $cancelled] = $this->agent('cancel_appointment', 'call_new', '+49 151 2345678',
            ['appointment_id' => $booked['appointment_id'], 'confirmed' => true]);
        $this->assertTrue($cancelled['ok'], json_encode($cancelled));
        $this->assertSame(['reschedule', 'cancel'], array_column($this->book->appointmentChanges($booked['appointment_id'])['changes'], 'kind'));

        // The "args only" form: the function named apart, the call id in the args.
        $argsOnly = json_encode(['call_id' => 'call_new']);
        $ms = (int) floor(microtime(true) * 1000);
        $answer = $this->book->agentAnswer($argsOnly, "v=$ms,d=" . hash_hmac('sha256', $argsOnly . $ms, self::RETELL_KEY), 'get_call_context');
        $this->assertSame([200, 'get_call_context', true], [$answer['http_status'], $answer['function'], $answer['body']['known_caller']]);

        $this->assertSame(401, $this->agent('get_call_context', 'call_new', '+1', [], 'wrong_key')[0]);
        [$status, $unknown] = $this->agent('drop_tables', 'call_new', '+1', []);
        $this->assertSame([400, 'unknown_function'], [$status, $unknown['code']]);
        $this->assertSame(401, $this->book->agentAnswer('{"name":', 'v=1,d=00')['http_status'], 'the signature first');
        $ms = (int) floor(microtime(true) * 1000);
        $malformed = $this->book->agentAnswer('{"name":', "v=$ms,d=" . hash_hmac('sha256', '{"name":' . $ms, self::RETELL_KEY));
        $this->assertSame([400, 'malformed_json'], [$malformed['http_status'], $malformed['body']['code']]);

        $keyless = Fixture::open();
        $e = self::refused(fn () => $keyless->agentAnswer('{}', 'v=1,d=00'));
        $this->assertSame(['not_configured', 2], [$e->errorCode, $e->status]);
    }

    public function testACalcomWebhookHoldsABookingMadeInCalcomOnce(): void
    {
        $payload = ['uid' => 'cal-made-there', 'bookingId' => 9001, 'eventTypeId' => 123,
            'startTime' => '2099-03-01T09:00:00Z', 'endTime' => '2099-03-01T09:30:00Z', 'status' => 'ACCEPTED',
            'attendees' => [['name' => 'Max M.', 'email' => 'max@example.com', 'phoneNumber' => '0151 2345678']]];
        $created = $this->hook('BOOKING_CREATED', $payload);
        $imported = $this->deliver($created);
        $this->assertSame('imported', $imported['result']);
        [$id] = $imported['appointment_ids'];
        $this->assertSame('already_applied', $this->deliver($created)['result'], 'a redelivery');
        // Held for the caller by their number: they find it by voice.
        $this->assertSame([$id], array_column($this->book->findAppointments('call_max')['appointments'], 'id'));
        $this->assertSame('cancelled', $this->deliver($this->hook('BOOKING_CANCELLED', $payload))['result']);
        $this->assertSame([], $this->book->findAppointments('call_max')['appointments']);
        $this->sync();
        $this->assertSame(0, $this->calcom->stats()['requests'], 'what Cal.com did is not pushed back to it');

        $e = self::refused(fn () => $this->deliver($created, 1, 'another_secret'));
        $this->assertSame(['bad_signature', 3], [$e->errorCode, $e->status]);
        $this->assertSame('company_not_found', self::refused(fn () => $this->deliver($created, 9))->errorCode);
        $e = self::refused(fn () => $this->book->calcomWebhook(1, '{"triggerEvent":', hash_hmac('sha256', '{"triggerEvent":', self::WEBHOOK_SECRET)));
        $this->assertSame(2, $e->status, $e->errorCode);
    }

    public function testPullHoldsBookingsMadeElsewhereOnceAndDriftSaysWhatDiffers(): void
    {
        $this->calcom->addBookingElsewhere(123, '2099-02-01T09:00:00Z', ['name' => 'Max M.', 'phoneNumber' => '+49 151 2345678']);
        $this->calcom->addBookingElsewhere(123, '2099-02-02T09:00:00Z', ['name' => 'Walk In', 'email' => 'walk@example.com']);
        $options = ['days_ahead' => 40000];
        $pulled = $this->book->pullFromCalcom($options);
        $this->assertSame([1, 2, 2, 0], [$pulled['companies'], $pulled['listed'], $pulled['imported'], $pulled['known']]);
        $again = $this->book->pullFromCalcom($options);
        $this->assertSame([0, 2], [$again['imported'], $again['known']], 'held once');
        $this->assertCount(1, $this->book->findAppointments('call_max')['appointments'], 'the caller finds what they booked online');

        $drift = $this->book->calcomDrift($options);
        $this->assertSame([[1, [], [], [], []]], array_map(static fn (array $c): array => [$c['company_id'],
            $c['missing_locally'], $c['missing_in_calcom'], $c['different_start'], $c['cancelled_one_side']], $drift['companies']));
        $late = $this->calcom->addBookingElsewhere(123, '2099-02-03T09:00:00Z', ['name' => 'Late']);
        $this->assertSame([$late], $this->book->calcomDrift($options)['companies'][0]['missing_locally']);

        $this->assertSame('company_not_found', self::refused(fn () => $this->book->pullFromCalcom(['company_id' => 9]))->errorCode);
        $this->assertSame('invalid_json', self::refused(fn () => $this->book->calcomDrift(['dayz_ahead' => 1]))->errorCode);
    }
}
