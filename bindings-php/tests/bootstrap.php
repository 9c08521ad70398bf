<?php

declare(strict_types=1);

// The package's PSR-4 map (composer.json) without Composer: the tests run
// from a plain checkout with Debian's phpunit.
spl_autoload_register(static function (string $class): void {
    foreach (['Callbook\\Tests\\' => __DIR__ . '/', 'Callbook\\' => __DIR__ . '/../src/'] as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
