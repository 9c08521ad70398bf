<?php

declare(strict_types=1);

namespace Callbook\Tests;

use Callbook\CallbookException;
use PHPUnit\Framework\TestCase;

/**
 * The sync worker from PHP against core's loopback fake Cal.com: a booking is
 * confirmed at once and synced later; an outage ends on the review list and
 * a review retry syncs it; availability answers are remembered per call.
 */
final class SyncTest extends TestCase
{
    private FakeCalcom $calcom;

    protected function setUp(): void
    {
        $this->calcom = new FakeCalcom();
    }

    protected function tearDown(): void
    {
        unset($this->calcom);
        Fixture::cleanup();
    }

    public function testBookingIsConfirmedAtOnceAndSyncedLater(): void
    {
        $book = Fixture::open([Fixture::call('call_1', '+49 151 2345678')]);
        $t = hrtime(true);
        $b = $book->book(['retell_call_id' => 'call_1', 'customer_name' => 'Max Mustermann', 'customer_email' => 'max@example.com',
            'service_id' => 1, 'start' => '2099-01-08T13:00:00Z']);
        $ms = (hrtime(true) - $t) / 1e6;
        $this->assertSame(['confirmed', 'pending'], [$b['status'], $b['calcom_sync_status']]);
        $this->assertSame(0, $this->calcom->stats()['requests'], 'booking never waits for Cal.com');
        $this->assertLessThan(1000, $ms);

        $report = $book->syncOnce(['calcom_url' => $this->calcom->url]);
        $this->assertSame([1, 1, 0, 0], [$report['jobs'], $report['synced'], $report['retried'], $report['flagged']]);
        $this->assertSame(['cancelled_before_sync' => 0, 'failed' => 0, 'pending' => 0, 'synced' => 1], $book->stats()['appointments']);
        $bookings = $this->calcom->bookings();
        $this->assertCount(1, $bookings);
        $this->assertSame('max@example.com', $bookings[0]['attendees'][0]['email'] ?? $bookings[0]['attendee']['email'] ?? null);
        $again = $book->syncOnce(['calcom_url' => $this->calcom->url]);
        $this->assertSame(0, $again['jobs'], 'nothing left to do');
    }

    public function testOutageEndsInReviewAndRetrySyncsIt(): void
    {
        $book = Fixture::open([Fixture::call('call_1', 'anonymous')]);
        $b = $book->book(['retell_call_id' => 'call_1', 'customer_name' => 'Jane', 'service_id' => 1, 'start' => '2099-01-08T13:00:00Z']);
        $this->assertSame('ok', $this->calcom->send('down'));

        // Backoff 0: every retry is due at once, so one run uses all 4 attempts (no sleeping).
        $report = $book->syncOnce(['calcom_url' => $this->calcom->url, 'backoff_ms' => [0], 'threads' => 1]);
        $this->assertSame([4, 0, 3, 1], [$report['jobs'], $report['synced'], $report['retried'], $report['flagged']]);
        $review = $book->reviewList()['appointments'];
        $this->assertCount(1, $review);
        $flagged = $review[0];
        $this->assertSame([$b['appointment_id'], 'failed', 4, true], [$flagged['id'], $flagged['calcom_sync_status'],
            $flagged['sync_attempt_count'], $flagged['requires_manual_review']]);
        $this->assertNotNull($flagged['sync_error_code']);
        $this->assertSame(1, $book->stats()['manual_review']);

        $this->assertSame('ok', $this->calcom->send('up'));
        $retried = $book->reviewRetry($b['appointment_id'])['appointment'];
        $this->assertSame(['pending', false], [$retried['calcom_sync_status'], $retried['requires_manual_review']]);
        $report = $book->syncOnce(['calcom_url' => $this->calcom->url]);
        $this->assertSame(1, $report['synced']);
        $this->assertSame([], $book->reviewList()['appointments']);
        $stats = $book->stats();
        $this->assertSame([['cancelled_before_sync' => 0, 'failed' => 0, 'pending' => 0, 'synced' => 1], 0], [$stats['appointments'], $stats['manual_review']]);
        $fake = $this->calcom->stats();
        $this->assertSame([1, 0], [$fake['creates'], $fake['duplicated_keys']], 'one Cal.com booking, never two');
    }

    public function testReviewResolveRecordsWhoAndWhy(): void
    {
        $book = Fixture::open([Fixture::call('call_1', 'anonymous')]);
        $b = $book->book(['retell_call_id' => 'call_1', 'customer_name' => 'Jane', 'service_id' => 1, 'start' => '2099-01-08T13:00:00Z']);
        $this->calcom->send('fail 400');
        $report = $book->syncOnce(['calcom_url' => $this->calcom->url]);
        $this->assertSame(1, $report['flagged'], 'a 400 is not retried');
        $a = $book->reviewResolve($b['appointment_id'], 'booked by phone instead', 'anna')['appointment'];
        $this->assertSame(['anna', 'booked by phone instead', false], [$a['review_resolved_by'], $a['review_note'], $a['requires_manual_review']]);
        try {
            $book->reviewRetry($b['appointment_id']);
            $this->fail('resolved: no longer on the list');
        } catch (CallbookException $e) {
            $this->assertSame(['not_in_review', 3], [$e->errorCode, $e->status]);
        }
    }

    public function testAvailabilityIsRememberedForTheCallAndABookingOutsideItIsRefused(): void
    {
        $book = Fixture::open([Fixture::call('call_1', '+49 151 2345678')]);
        $slots = $book->checkAvailability(['retell_call_id' => 'call_1', 'service_id' => 1, 'date' => '2099-01-08',
            'calcom_url' => $this->calcom->url]);
        // The fake's host works 09:00-17:00 Berlin time every 30 minutes.
        $this->assertSame(['2099-01-08', 'Europe/Berlin', true], [$slots['date'], $slots['time_zone'], $slots['remembered']]);
        $this->assertSame('2099-01-08T08:00:00Z', $slots['slots'][0]);
        try {
            $book->book(['retell_call_id' => 'call_1', 'customer_name' => 'Max', 'service_id' => 1, 'start' => '2099-01-08T07:10:00Z']);
            $this->fail('not an offered start');
        } catch (CallbookException $e) {
            $this->assertSame(['slot_unavailable', 3], [$e->errorCode, $e->status]);
            $this->assertSame(['2099-01-08T08:00:00Z', '2099-01-08T08:30:00Z', '2099-01-08T09:00:00Z'], $e->alternatives);
        }
        $ok = $book->book(['retell_call_id' => 'call_1', 'customer_name' => 'Max', 'service_id' => 1, 'start' => $slots['slots'][0]]);
        $this->assertSame('confirmed', $ok['status']);
    }
}
