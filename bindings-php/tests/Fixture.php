<?php

declare(strict_types=1);

namespace Callbook\Tests;

use Callbook\Callbook;

/** A temporary database with one company, one branch and one service. */
final class Fixture
{
    public const DIRECTORY = [
        'companies' => [['id' => 1, 'name' => 'Salon Berlin', 'calcom_api_key' => 'cal_test_key']],
        'branches' => [[
            'id' => 1, 'company_id' => 1, 'name' => 'Mitte', 'timezone' => 'Europe/Berlin',
            'country' => 'DE', 'phone_number' => '+49301234567',
        ]],
        'services' => [['id' => 1, 'company_id' => 1, 'name' => 'Haircut', 'calcom_event_type_id' => 123, 'duration_minutes' => 30]],
    ];

    /** @var string[] */
    private static array $dirs = [];

    public static function path(): string
    {
        $dir = sys_get_temp_dir() . '/callbook-php-' . bin2hex(random_bytes(6));
        mkdir($dir);
        self::$dirs[] = $dir;
        return "$dir/test.db";
    }

    public static function open(array $calls = []): Callbook
    {
        // The tests book in 2099 (always in the future): past the default 365-day horizon.
        $book = new Callbook(self::path(), ['synchronous' => 'normal', 'horizon_days' => 40000]);
        $book->import(self::DIRECTORY + ['calls' => $calls]);
        return $book;
    }

    public static function call(string $id, ?string $from): array
    {
        return ['retell_call_id' => $id, 'company_id' => 1, 'branch_id' => 1, 'from_number' => $from];
    }

    public static function cleanup(): void
    {
        foreach (self::$dirs as $dir) {
            array_map('unlink', glob("$dir/*") ?: []);
            @rmdir($dir);
        }
        self::$dirs = [];
    }
}
