<?php

declare(strict_types=1);

namespace Callbook\Tests;

use Callbook\Callbook;
use PHPUnit\Framework\TestCase;

/**
 * The shared vectors in tests/vectors/ that have a PHP function: the same
 * answers the Rust, Node and WASM tests get.
 */
final class VectorsTest extends TestCase
{
    private static function cases(string $file): array
    {
        $json = file_get_contents(dirname(__DIR__, 2) . "/tests/vectors/$file");
        $cases = [];
        foreach (json_decode((string) $json, true, 512, JSON_THROW_ON_ERROR)['cases'] as $i => $case) {
            $cases[($case['name'] ?? json_encode($case['input'] ?? null)) . " #$i"] = [$case];
        }
        return $cases;
    }

    public static function anonymous(): array
    {
        return self::cases('anonymous.json');
    }

    /** @dataProvider anonymous */
    public function testDetectAnonymous(array $c): void
    {
        $this->assertSame(['anonymous' => $c['reason'] !== null, 'reason' => $c['reason']], Callbook::detectAnonymous($c['input']));
    }

    public static function emails(): array
    {
        return self::cases('email.json');
    }

    /** @dataProvider emails */
    public function testNormalizeEmail(array $c): void
    {
        $this->assertSame($c['output'], Callbook::normalizeEmail($c['input']));
    }

    public static function placeholders(): array
    {
        return self::cases('placeholder_phone.json');
    }

    /** @dataProvider placeholders */
    public function testPlaceholderPhone(array $c): void
    {
        $this->assertSame($c['expected'], Callbook::placeholderPhone($c['name'], $c['call_db_id'], $c['unix_seconds']));
    }

    public static function requests(): array
    {
        return self::cases('booking_request.json');
    }

    /** @dataProvider requests */
    public function testValidateBookingRequest(array $c): void
    {
        $problems = Callbook::validateBookingRequest($c['request']);
        foreach ($problems as $p) {
            $this->assertIsString($p['message']);
        }
        $this->assertSame($c['problems'], array_map(static fn ($p) => ['field' => $p['field'], 'code' => $p['code']], $problems));
    }

    public static function signatures(): array
    {
        return self::cases('retell_signature.json');
    }

    /** @dataProvider signatures */
    public function testVerifyRetellSignature(array $c): void
    {
        $this->assertSame($c['valid'], Callbook::verifyRetellSignature($c['body'], $c['header'], $c['apiKey'], $c['nowMs']));
    }

    public function testSignatureOverRawBytesWithANulByte(): void
    {
        // The body crosses as bytes with a length, not as a C string.
        $body = "{\"a\":\"x\0y\"}";
        $now = 1_900_000_000_000;
        $header = sprintf('v=%d,d=%s', $now, hash_hmac('sha256', $body . $now, 'k'));
        $this->assertTrue(Callbook::verifyRetellSignature($body, $header, 'k', $now));
        $this->assertFalse(Callbook::verifyRetellSignature("{\"a\":\"x\"}", $header, 'k', $now));
    }
}
