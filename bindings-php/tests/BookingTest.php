<?php

declare(strict_types=1);

namespace Callbook\Tests;

use Callbook\Callbook;
use Callbook\CallbookException;
use PHPUnit\Framework\TestCase;

/** Booking through FFI: the original design's identity rules, and errors as exceptions. */
final class BookingTest extends TestCase
{
    protected function tearDown(): void
    {
        Fixture::cleanup();
    }

    /** A row of the database the test opened, read with PDO (to see what was really stored). */
    private static function row(string $path, string $sql, array $params): array
    {
        $db = new \PDO("sqlite:$path");
        $st = $db->prepare($sql);
        $st->execute($params);
        return $st->fetch(\PDO::FETCH_ASSOC) ?: [];
    }

    public function testAnonymousCallerGetsANewCustomerWithNullEmailAndAPlaceholderPhone(): void
    {
        $path = Fixture::path();
        $book = new Callbook($path, ['horizon_days' => 40000]);
        $book->import(Fixture::DIRECTORY + ['calls' => [['id' => 7] + Fixture::call('call_anon', 'anonymous')]]);
        $before = time();
        $b = $book->book(['retell_call_id' => 'call_anon', 'customer_name' => 'Jane Doe', 'customer_email' => '  ',
            'service_id' => 1, 'start' => '2099-01-08T13:00:00Z']);

        $this->assertTrue($b['anonymous']);
        $this->assertSame(['confirmed', 'pending', '2099-01-08T13:00:00Z'], [$b['status'], $b['calcom_sync_status'], $b['starts_at']]);
        // anonymous_<unix seconds>_<md5(name . call_db_id)[0..8]>, computed here by PHP itself.
        $this->assertMatchesRegularExpression('/^anonymous_(\d+)_' . substr(md5('Jane Doe7'), 0, 8) . '$/', $b['customer_phone']);
        $seconds = (int) explode('_', $b['customer_phone'])[1];
        $this->assertGreaterThanOrEqual($before, $seconds);
        $this->assertLessThanOrEqual(time(), $seconds);

        $customer = self::row($path, 'SELECT email, phone, source, anonymity_reason FROM customers WHERE id = ?', [$b['customer_id']]);
        $this->assertSame(
            ['email' => null, 'phone' => $b['customer_phone'], 'source' => 'retell_webhook_anonymous', 'anonymity_reason' => 'withheld_word'],
            $customer,
        );
    }

    public function testTwoAnonymousCallersWithTheSameNameAreTwoCustomers(): void
    {
        $book = Fixture::open([Fixture::call('call_a', 'anonymous'), Fixture::call('call_b', 'Restricted')]);
        $request = ['customer_name' => 'Anna Schmidt', 'customer_email' => 'anna@example.com', 'service_id' => 1];
        $a = $book->book($request + ['retell_call_id' => 'call_a', 'start' => '2099-01-08T13:00:00Z']);
        $b = $book->book($request + ['retell_call_id' => 'call_b', 'start' => '2099-01-08T14:00:00Z']);

        $this->assertTrue($a['anonymous'] && $b['anonymous']);
        $this->assertNotSame($a['customer_id'], $b['customer_id']);
        $stats = $book->stats();
        $this->assertSame([2, 0], [$stats['customers_anonymous'], $stats['customers_known']]);
        // The second caller's email belongs to the first customer: never linked, flagged for a person.
        $review = $book->reviewList()['appointments'];
        $this->assertCount(1, $review);
        $this->assertSame([$b['appointment_id'], 'email_conflict'], [$review[0]['id'], $review[0]['review_reason']]);
    }

    public function testKnownCallersAreFoundByTheirNumberAndRetriesAreIdempotent(): void
    {
        $book = Fixture::open([Fixture::call('call_1', '+49 151 2345678'), Fixture::call('call_2', '0151 2345678')]);
        $first = ['retell_call_id' => 'call_1', 'customer_name' => 'Max', 'service_id' => 1, 'date' => '2099-01-08', 'time' => '14:30'];
        $a = $book->book($first);
        $this->assertSame([false, '+491512345678', '2099-01-08T13:30:00Z'], [$a['anonymous'], $a['customer_phone'], $a['starts_at']]);
        $this->assertSame($a, $book->book($first), 'a retried function call answers with the first booking');
        $b = $book->book(['retell_call_id' => 'call_2', 'customer_name' => 'Max M.', 'service_id' => 1, 'start' => '2099-01-09T10:00:00+01:00']);
        $this->assertSame($a['customer_id'], $b['customer_id']);
    }

    public function testRegisterCallFindsTheBranchByTheDialledNumber(): void
    {
        $book = Fixture::open();
        $call = $book->registerCall(['retell_call_id' => 'call_x', 'from_number' => '+4917012345678', 'to_number' => '+49 30 1234567']);
        $this->assertSame(['call_x', 1, 1], [$call['retell_call_id'], $call['company_id'], $call['branch_id']]);
        $this->assertSame($call, $book->registerCall(['retell_call_id' => 'call_x', 'from_number' => 'other']));
    }

    public function testErrorsThrowWithTheCoreCodeAndTheCliStatus(): void
    {
        $book = Fixture::open([Fixture::call('call_1', 'anonymous')]);
        $cases = [
            [['retell_call_id' => 'nope', 'customer_name' => 'X', 'service_id' => 1, 'start' => '2099-01-08T13:00:00Z'], 'call_not_found', 3],
            [['retell_call_id' => 'call_1', 'customer_name' => 'X', 'service_id' => 1, 'start' => '2001-01-08T13:00:00Z'], 'start_in_past', 3],
            [['retell_call_id' => 'call_1', 'customer_name' => 'X', 'service_id' => 9, 'start' => '2099-01-08T13:00:00Z'], 'service_not_found', 3],
            [['retell_call_id' => 'call_1', 'customer_name' => '', 'service_id' => 1, 'start' => '2099-01-08T13:00:00Z'], 'customer_name_required', 2],
            [['retell_call_id' => 'call_1', 'service_id' => 1], 'invalid_json', 2],
        ];
        foreach ($cases as [$request, $code, $status]) {
            try {
                $book->book($request);
                $this->fail("expected $code");
            } catch (CallbookException $e) {
                $this->assertSame([$code, $status], [$e->errorCode, $e->status], $e->getMessage());
                $this->assertNotSame('', $e->getMessage());
            }
        }
        $this->assertSame(0, array_sum($book->stats()['appointments']), 'nothing written by a refused booking');
    }

    public function testOpeningErrors(): void
    {
        try {
            new Callbook(Fixture::path(), ['synchronus' => 'normal']);
            $this->fail('a misspelt option');
        } catch (CallbookException $e) {
            $this->assertSame(['invalid_json', 2], [$e->errorCode, $e->status]);
            $this->assertStringContainsString('synchronus', $e->getMessage());
        }
        try {
            new Callbook(Fixture::path(), ['library' => '/nonexistent/libcallbook.so']);
            $this->fail('no library');
        } catch (CallbookException $e) {
            $this->assertSame('library_not_found', $e->errorCode);
        }
        $book = Fixture::open();
        $book->close();
        try {
            $book->stats();
            $this->fail('closed');
        } catch (CallbookException $e) {
            $this->assertSame('closed', $e->errorCode);
        }
    }
}
