// ESLint for the TypeScript tree and the project's own CommonJS scripts (`npm run lint`;
// the unit tier runs it too, in tests/unit/lint.test.ts): the recommended sets of ESLint
// and typescript-eslint, plus a few rules the code already follows everywhere. Generated
// code and the build are not linted; C and C++ are checked by clang-format
// (bpf/.clang-format, native/.clang-format).
const { defineConfig } = require('eslint/config');
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');

module.exports = defineConfig(
  { ignores: ['node_modules/', 'dist/', 'build/', 'proto/gen/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      eqeqeq: 'error',
      'no-throw-literal': 'error',
      'object-shorthand': 'error',
      '@typescript-eslint/array-type': 'error',
      '@typescript-eslint/consistent-type-definitions': ['error', 'interface'],
    },
  },
  {
    // The addon is a .node file found at run time (source tree or dist/): require() is
    // how Node loads one.
    files: ['native/index.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Plain Node scripts (CommonJS, run as they are): scripts/lib/*.js, the configs,
    // tests/vm/guest-exec.js and tests/vm/matrix-table (a script without an extension).
    files: ['**/*.js', 'tests/vm/matrix-table'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly', __dirname: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Tests drive untyped gRPC surfaces: services from loadPackageDefinition (health,
    // reflection) and the fake agent's one generic handler for every method.
    files: ['tests/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
