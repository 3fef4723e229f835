//! What a Python app's files say: how its dependencies are declared, which Python it asks
//! for, and how it starts. Pure reads of the app directory, shared by detect and build.

use std::collections::BTreeSet;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};

use crate::common::files::App;
use crate::common::process::shell;
use crate::common::{Error, Requested, Result};

/// How the app's dependencies are declared, and so how they are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Manager {
    /// `requirements.txt`, or a `pyproject.toml`/`setup.py` project installed with pip.
    Pip,
    /// `uv.lock` (with `pyproject.toml`).
    Uv,
    /// `poetry.lock` (with `pyproject.toml`).
    Poetry,
    /// `Pipfile.lock` or `Pipfile`.
    Pipenv,
    /// Nothing to install: a lone script.
    None,
}

impl Manager {
    fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "pip" => Some(Self::Pip),
            "uv" => Some(Self::Uv),
            "poetry" => Some(Self::Poetry),
            "pipenv" => Some(Self::Pipenv),
            _ => None,
        }
    }
}

/// Everything detect decides, recorded in the build plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Project {
    /// How dependencies are installed.
    #[serde(rename = "package-manager")]
    pub(crate) manager: Manager,
    /// The files that declare them (their digest keys the dependency layer).
    #[serde(rename = "dependency-files")]
    pub(crate) dependency_files: Vec<String>,
    /// Whether the app itself is a package to install (`pip install .`).
    #[serde(rename = "install-project")]
    pub(crate) install_app: bool,
    /// Why the app is not installed although its pyproject.toml would have it be (a Poetry
    /// project with no package of its name): a warning for the build output.
    #[serde(skip)]
    pub(crate) install_skipped: Option<String>,
    /// The Python version asked for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) requested: Option<Requested>,
    /// The default process's command.
    #[serde(skip)]
    pub(crate) command: Option<Vec<String>>,
    /// How it was chosen (`gunicorn (Flask app in app.py)`).
    #[serde(rename = "start-reason", skip_serializing_if = "Option::is_none")]
    pub(crate) start_reason: Option<String>,
    /// Dependency names (normalised), for the start command.
    #[serde(skip)]
    pub(crate) dependencies: BTreeSet<String>,
}

/// PEP 503 normalised project name.
pub(crate) fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The project name at the start of a PEP 508 requirement (`Flask[async]>=2 ; …` → `flask`).
pub(crate) fn requirement_name(line: &str) -> Option<String> {
    let name: String = line
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| normalize(&name))
}

/// The names required by a requirements file, following `-r`/`-c` includes (depth-limited).
fn requirements_names(app: &App, rel: &str, depth: usize) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let Some(text) = app.read(rel)? else {
        return Ok(names);
    };
    let base = std::path::Path::new(rel)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(include) = line
            .strip_prefix("-r ")
            .or_else(|| line.strip_prefix("--requirement "))
        {
            if depth < 8 {
                let include = include.trim();
                let path = if base.is_empty() {
                    include.to_string()
                } else {
                    format!("{base}/{include}")
                };
                names.extend(requirements_names(app, &path, depth + 1)?);
            }
            continue;
        }
        if line.starts_with('-') || line.contains("://") || line.starts_with('.') {
            continue;
        }
        if let Some(name) = requirement_name(line) {
            names.insert(name);
        }
    }
    Ok(names)
}

fn table<'a>(value: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Table> {
    let mut current = value;
    for key in path {
        current = current.get(*key)?.as_table()?;
    }
    Some(current)
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The Python version the app asks for: `.python-version`, else `runtime.txt`, else the
/// Pipfile's `[requires]`, else `requires-python`.
fn requested_version(app: &App, pyproject: Option<&toml::Table>) -> Result<Option<Requested>> {
    if let Some(text) = app.read(".python-version")?
        && let Some(version) = first_line(&text)
    {
        return Ok(Some(Requested {
            version,
            source: ".python-version".to_string(),
        }));
    }
    if let Some(text) = app.read("runtime.txt")?
        && let Some(line) = first_line(&text)
    {
        let version = line.strip_prefix("python-").ok_or_else(|| {
            Error::new(format!("runtime.txt: `{line}` is not a Python version"))
                .hint("write it as `python-3.11`, or use a .python-version file with `3.11`")
        })?;
        return Ok(Some(Requested {
            version: version.to_string(),
            source: "runtime.txt".to_string(),
        }));
    }
    if let Some(pipfile) = app.read_toml("Pipfile")?
        && let Some(requires) = table(&pipfile, &["requires"])
    {
        for key in ["python_full_version", "python_version"] {
            if let Some(v) = requires.get(key).and_then(toml::Value::as_str) {
                return Ok(Some(Requested {
                    version: v.to_string(),
                    source: format!("Pipfile [requires] {key}"),
                }));
            }
        }
    }
    if let Some(spec) = pyproject
        .and_then(|p| table(p, &["project"]))
        .and_then(|p| p.get("requires-python"))
        .and_then(toml::Value::as_str)
    {
        return Ok(Some(Requested {
            version: spec.to_string(),
            source: "pyproject.toml requires-python".to_string(),
        }));
    }
    Ok(None)
}

/// Checks a request against the Python a run image provides (`3.11.2`). A bare version
/// (`3.11`, `3.11.4`) must match in major and minor; a patch difference is a warning
/// (returned), since Debian backports fixes into its own patch release. A specifier
/// (`>=3.9,<3.13`) must contain the provided version.
pub(crate) fn check_version(requested: &Requested, provided: &str) -> Result<Option<String>> {
    let have = Version::from_str(provided)
        .map_err(|e| Error::new(format!("cannot read Python version `{provided}`: {e}")))?;
    let wanted = requested.version.trim();
    let is_bare = wanted
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '*');
    let refuse = || {
        Error::new(format!(
            "Python {wanted} was requested ({}), but the run image provides Python {provided}",
            requested.source
        ))
        .hint(format!(
            "ask for {} in {} (the run image ships Debian's Python {provided}), or build on a run image with Python {wanted} (--run-image)",
            have.release().iter().take(2).map(ToString::to_string).collect::<Vec<_>>().join("."),
            requested.source
        ))
    };
    if is_bare {
        let parts: Vec<&str> = wanted.split('.').filter(|p| *p != "*").collect();
        let release = have.release();
        for (index, part) in parts.iter().enumerate().take(2) {
            let n: u64 = part.parse().map_err(|_| {
                Error::new(format!(
                    "{}: `{wanted}` is not a Python version",
                    requested.source
                ))
            })?;
            if release.get(index).copied() != Some(n) {
                return Err(refuse());
            }
        }
        if let Some(patch) = parts.get(2)
            && release.get(2).map(ToString::to_string).as_deref() != Some(*patch)
        {
            return Ok(Some(format!(
                "Python {wanted} was requested ({}); using {provided}, Debian's patched release of the same minor version",
                requested.source
            )));
        }
        return Ok(None);
    }
    let specifiers = VersionSpecifiers::from_str(wanted).map_err(|e| {
        Error::new(format!(
            "{}: `{wanted}` is not a valid version specifier: {e}",
            requested.source
        ))
    })?;
    if specifiers.contains(&have) {
        Ok(None)
    } else {
        Err(refuse())
    }
}

/// Which of the dependency files are present.
fn dependency_files(app: &App) -> Vec<&'static str> {
    [
        "requirements.txt",
        "uv.lock",
        "poetry.lock",
        "Pipfile.lock",
        "Pipfile",
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
    ]
    .into_iter()
    .filter(|f| app.is_file(f))
    .collect()
}

/// Which manager: each lockfile (or requirements.txt) names one, several conflict, and
/// `forced` (`KILN_PYTHON_PACKAGE_MANAGER`) settles it.
fn choose_manager(
    files: &[&str],
    pyproject: Option<&toml::Table>,
    forced: Option<&str>,
) -> Result<Manager> {
    let has = |f: &str| files.contains(&f);
    let mut candidates: Vec<(Manager, &str)> = Vec::new();
    for (file, manager) in [
        ("requirements.txt", Manager::Pip),
        ("uv.lock", Manager::Uv),
        ("poetry.lock", Manager::Poetry),
    ] {
        if has(file) {
            candidates.push((manager, file));
        }
    }
    if has("Pipfile.lock") {
        candidates.push((Manager::Pipenv, "Pipfile.lock"));
    } else if has("Pipfile") {
        candidates.push((Manager::Pipenv, "Pipfile"));
    }
    let manager = match forced.filter(|f| !f.trim().is_empty()) {
        Some(name) => Manager::parse(name).ok_or_else(|| {
            Error::new(format!(
                "KILN_PYTHON_PACKAGE_MANAGER={name} is not one of pip, uv, poetry, pipenv"
            ))
        })?,
        None => match candidates.as_slice() {
            [] if pyproject.is_some() || has("setup.py") => Manager::Pip,
            [] => Manager::None,
            [(manager, _)] => *manager,
            several => {
                let names: Vec<&str> = several.iter().map(|(_, f)| *f).collect();
                return Err(Error::new(format!(
                    "conflicting dependency files: {} each declare the dependencies",
                    names.join(" and ")
                ))
                .hint("keep one of them, or choose the package manager: kiln build --env KILN_PYTHON_PACKAGE_MANAGER=pip|uv|poetry|pipenv"));
            }
        },
    };
    let missing = |what: &str, fix: &str| Err(Error::new(what.to_string()).hint(fix.to_string()));
    match manager {
        Manager::Uv if pyproject.is_none() => missing(
            "uv.lock needs a pyproject.toml beside it",
            "commit the project's pyproject.toml",
        ),
        Manager::Poetry if pyproject.is_none() => missing(
            "poetry.lock needs a pyproject.toml beside it",
            "commit the project's pyproject.toml",
        ),
        Manager::Uv if !has("uv.lock") => missing(
            "KILN_PYTHON_PACKAGE_MANAGER=uv needs a uv.lock",
            "run `uv lock` and commit uv.lock",
        ),
        Manager::Poetry if !has("poetry.lock") => missing(
            "KILN_PYTHON_PACKAGE_MANAGER=poetry needs a poetry.lock",
            "run `poetry lock` and commit poetry.lock",
        ),
        Manager::Pipenv if !has("Pipfile") && !has("Pipfile.lock") => missing(
            "KILN_PYTHON_PACKAGE_MANAGER=pipenv needs a Pipfile",
            "commit the Pipfile and Pipfile.lock",
        ),
        _ => Ok(manager),
    }
}

/// Whether the app is itself a package to install: it has a build system (or setup.py) and
/// its manager does not say otherwise. requirements.txt is the whole environment, as on
/// Heroku.
fn installs_app(manager: Manager, files: &[&str], pyproject: Option<&toml::Table>) -> bool {
    let build_system = pyproject.is_some_and(|p| p.contains_key("build-system"));
    let flag = |path: &[&str], key: &str| {
        pyproject
            .and_then(|p| table(p, path))
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_bool)
    };
    match manager {
        Manager::Pip if files.contains(&"requirements.txt") => false,
        Manager::Pip => files.contains(&"setup.py") || build_system,
        Manager::Uv => build_system && flag(&["tool", "uv"], "package") != Some(false),
        Manager::Poetry => build_system && flag(&["tool", "poetry"], "package-mode") != Some(false),
        Manager::Pipenv | Manager::None => false,
    }
}

/// Why a Poetry project in package mode has no package to install, found the way Poetry
/// finds it: no `packages` list in `[tool.poetry]`, and no package or module named like the
/// project (`my-bot` → `my_bot/`, `src/my_bot/`, `my_bot.py` or `src/my_bot.py`). Poetry then
/// warns and installs the dependencies only; building a wheel of the project fails.
fn poetry_without_package(app: &App, pyproject: &toml::Table) -> Option<String> {
    let poetry = table(pyproject, &["tool", "poetry"]);
    if poetry
        .and_then(|p| p.get("packages"))
        .and_then(toml::Value::as_array)
        .is_some_and(|list| !list.is_empty())
    {
        return None;
    }
    let name = table(pyproject, &["project"])
        .and_then(|p| p.get("name"))
        .or_else(|| poetry.and_then(|p| p.get("name")))
        .and_then(toml::Value::as_str)?;
    let module = normalize(name).replace('-', "_");
    let found = [
        (module.clone(), true),
        (format!("src/{module}"), true),
        (format!("{module}.py"), false),
        (format!("src/{module}.py"), false),
    ]
    .iter()
    .any(|(path, dir)| {
        if *dir {
            app.is_dir(path)
        } else {
            app.is_file(path)
        }
    });
    (!found).then(|| {
        format!(
            "pyproject.toml: the Poetry project `{name}` has no package to install (no {module}/, src/{module}/ or {module}.py); installing its dependencies only, as `poetry install` does. Set `package-mode = false` in [tool.poetry] if it is not meant to be a package, or list its packages in `packages`"
        )
    })
}

/// Reads the app. `None` when it is not a Python app. `forced` is
/// `KILN_PYTHON_PACKAGE_MANAGER`, which settles conflicts.
pub(crate) fn analyze(app: &App, forced: Option<&str>) -> Result<Option<Project>> {
    let files = dependency_files(app);
    let entry = ["main.py", "app.py", "manage.py"]
        .into_iter()
        .find(|f| app.is_file(f));
    if files.is_empty() && entry.is_none() {
        return Ok(None);
    }
    let has = |f: &str| files.contains(&f);
    let pyproject = app.read_toml("pyproject.toml")?;

    let manager = choose_manager(&files, pyproject.as_ref(), forced)?;

    let mut install_app = installs_app(manager, &files, pyproject.as_ref());
    let mut install_skipped = None;
    if install_app
        && manager == Manager::Poetry
        && let Some(pyproject) = pyproject.as_ref()
    {
        install_skipped = poetry_without_package(app, pyproject);
        install_app = install_skipped.is_none();
    }
    let dependencies = dependency_names(app, manager, pyproject.as_ref())?;
    let dependency_files: Vec<String> = match manager {
        Manager::Pip if has("requirements.txt") => vec!["requirements.txt".to_string()],
        Manager::Pip => files
            .iter()
            .filter(|f| matches!(**f, "pyproject.toml" | "setup.py" | "setup.cfg"))
            .map(ToString::to_string)
            .collect(),
        Manager::Uv => vec!["pyproject.toml".into(), "uv.lock".into()],
        Manager::Poetry => vec!["pyproject.toml".into(), "poetry.lock".into()],
        Manager::Pipenv => files
            .iter()
            .filter(|f| f.starts_with("Pipfile"))
            .map(ToString::to_string)
            .collect(),
        Manager::None => Vec::new(),
    };
    let requested = requested_version(app, pyproject.as_ref())?;
    let (command, start_reason) = match start(app, &dependencies, pyproject.as_ref())? {
        Some((command, reason)) => (Some(command), Some(reason)),
        None => (None, None),
    };
    Ok(Some(Project {
        manager,
        dependency_files,
        install_app,
        install_skipped,
        requested,
        command,
        start_reason,
        dependencies,
    }))
}

fn dependency_names(
    app: &App,
    manager: Manager,
    pyproject: Option<&toml::Table>,
) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let lock_names = |rel: &str, names: &mut BTreeSet<String>| -> Result<()> {
        if let Some(lock) = app.read_toml(rel)? {
            for package in lock
                .get("package")
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = package.get("name").and_then(toml::Value::as_str) {
                    names.insert(normalize(n));
                }
            }
        }
        Ok(())
    };
    match manager {
        Manager::Pip => names.extend(requirements_names(app, "requirements.txt", 0)?),
        Manager::Uv => lock_names("uv.lock", &mut names)?,
        Manager::Poetry => lock_names("poetry.lock", &mut names)?,
        Manager::Pipenv => {
            if let Some(lock) = app.read_json("Pipfile.lock")? {
                if let Some(default) = lock.get("default").and_then(|d| d.as_object()) {
                    names.extend(default.keys().map(|k| normalize(k)));
                }
            } else if let Some(pipfile) = app.read_toml("Pipfile")?
                && let Some(packages) = table(&pipfile, &["packages"])
            {
                names.extend(packages.keys().map(|k| normalize(k)));
            }
        }
        Manager::None => {}
    }
    if let Some(project) = pyproject.and_then(|p| table(p, &["project"])) {
        for dep in project
            .get("dependencies")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_str)
        {
            names.extend(requirement_name(dep));
        }
    }
    if let Some(deps) = pyproject.and_then(|p| table(p, &["tool", "poetry", "dependencies"])) {
        names.extend(deps.keys().map(|k| normalize(k)));
    }
    Ok(names)
}

/// A module-level `app = …`/`application = …` (or a `create_app` factory) in `text`: the
/// variable, or `create_app()`.
fn app_object(text: &str) -> Option<&'static str> {
    let mut factory = false;
    for line in text.lines() {
        for var in ["app", "application"] {
            if let Some(rest) = line.strip_prefix(var) {
                let rest = rest.trim_start();
                let rest = match rest.strip_prefix(':') {
                    // `app: Flask = Flask(__name__)`
                    Some(annotated) => annotated.split_once('=').map_or("", |(_, r)| r),
                    None => match rest.strip_prefix('=') {
                        Some(r) if !r.starts_with('=') => r,
                        _ => continue,
                    },
                };
                if !rest.trim().is_empty() {
                    return Some(if var == "app" { "app" } else { "application" });
                }
            }
        }
        if line.starts_with("def create_app(") {
            factory = true;
        }
    }
    factory.then_some("create_app()")
}

fn is_asgi(text: &str) -> bool {
    [
        "FastAPI(",
        "Starlette(",
        "Quart(",
        "Litestar(",
        "get_asgi_application(",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

/// The default process: Django (manage.py) with gunicorn, an app object served by gunicorn
/// (WSGI) or uvicorn (ASGI), else `main.py`/`app.py`, else a single `[project.scripts]`.
fn start(
    app: &App,
    deps: &BTreeSet<String>,
    pyproject: Option<&toml::Table>,
) -> Result<Option<(Vec<String>, String)>> {
    let gunicorn = deps.contains("gunicorn");
    let uvicorn = deps.contains("uvicorn");
    if deps.contains("django")
        && app.is_file("manage.py")
        && let Some(text) = app.read("manage.py")?
        && let Some(project) = django_project(&text)
    {
        if gunicorn {
            return Ok(Some((
                words(&["python3", "-m", "gunicorn", &format!("{project}.wsgi")]),
                format!("gunicorn serving Django's {project}.wsgi"),
            )));
        }
        if uvicorn {
            return Ok(Some((
                shell(&format!(
                    "python3 -m uvicorn {project}.asgi:application --host 0.0.0.0 --port \"${{PORT:-8080}}\""
                )),
                format!("uvicorn serving Django's {project}.asgi"),
            )));
        }
        return Ok(Some((
            shell("python3 manage.py runserver \"0.0.0.0:${PORT:-8080}\""),
            "Django's development server (add gunicorn to the dependencies for production)"
                .to_string(),
        )));
    }
    if gunicorn || uvicorn {
        for module in [
            "wsgi",
            "asgi",
            "app",
            "main",
            "server",
            "application",
            "api",
        ] {
            let file = format!("{module}.py");
            let Some(text) = app.read(&file)? else {
                continue;
            };
            let Some(object) = app_object(&text) else {
                continue;
            };
            let target = format!("{module}:{object}");
            if uvicorn && (is_asgi(&text) || !gunicorn) {
                let factory = if object.ends_with("()") {
                    " --factory"
                } else {
                    ""
                };
                let target = target.trim_end_matches("()");
                return Ok(Some((
                    shell(&format!(
                        "python3 -m uvicorn {target}{factory} --host 0.0.0.0 --port \"${{PORT:-8080}}\""
                    )),
                    format!("uvicorn serving the ASGI app {target} in {file}"),
                )));
            }
            return Ok(Some((
                words(&["python3", "-m", "gunicorn", &target]),
                format!("gunicorn serving the WSGI app {target} in {file}"),
            )));
        }
    }
    for file in ["main.py", "app.py"] {
        if app.is_file(file) {
            return Ok(Some((words(&["python3", file]), format!("runs {file}"))));
        }
    }
    if let Some(scripts) = pyproject.and_then(|p| table(p, &["project", "scripts"]))
        && let [name] = scripts.keys().collect::<Vec<_>>().as_slice()
    {
        return Ok(Some((
            words(&[name.as_str()]),
            format!("the project's script `{name}`"),
        )));
    }
    Ok(None)
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// The Django project package from manage.py's `DJANGO_SETTINGS_MODULE` default
/// (`os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")` → `mysite`).
fn django_project(manage_py: &str) -> Option<String> {
    const KEY: &str = "DJANGO_SETTINGS_MODULE";
    let rest = &manage_py[manage_py.find(KEY)? + KEY.len()..];
    // Past the key's closing quote, the next quoted string is the value.
    let rest = rest.trim_start_matches(['\'', '"']);
    let value = &rest[rest.find(['\'', '"'])? + 1..];
    let module: String = value
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .collect();
    module.strip_suffix(".settings").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::files::temp_app as app;

    #[test]
    fn names_normalise() {
        assert_eq!(normalize("Flask_SQLAlchemy"), "flask-sqlalchemy");
        assert_eq!(
            requirement_name("Django[argon2]>=4 ; python_version>'3'"),
            Some("django".into())
        );
        assert_eq!(requirement_name("  "), None);
    }

    #[test]
    fn requirements_follow_includes() {
        let (_d, a) = app(&[
            (
                "requirements.txt",
                "# c\n-r base.txt\ngunicorn==22.0 \\\n    --hash=sha256:ab\n--index-url x\n",
            ),
            ("base.txt", "Flask>=3\n-e .\n"),
        ]);
        let names = requirements_names(&a, "requirements.txt", 0).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["flask", "gunicorn"]);
    }

    #[test]
    fn versions_are_checked_against_the_run_image() {
        assert_eq!(
            check_version(&Requested::new("3.11", ".python-version"), "3.11.2").unwrap(),
            None
        );
        assert!(
            check_version(&Requested::new("3.11.4", "runtime.txt"), "3.11.2")
                .unwrap()
                .is_some()
        );
        let err = check_version(&Requested::new("3.12", ".python-version"), "3.11.2")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Python 3.12 was requested (.python-version)"),
            "{err}"
        );
        assert!(err.contains("provides Python 3.11.2"), "{err}");
        assert_eq!(
            check_version(&Requested::new(">=3.9,<3.13", "requires-python"), "3.11.2").unwrap(),
            None
        );
        assert!(check_version(&Requested::new(">=3.12", "requires-python"), "3.11.2").is_err());
        assert!(check_version(&Requested::new("banana", ".python-version"), "3.11.2").is_err());
    }

    #[test]
    fn managers_and_conflicts() {
        let (_d, a) = app(&[("requirements.txt", "flask\n")]);
        assert_eq!(analyze(&a, None).unwrap().unwrap().manager, Manager::Pip);
        let (_d, a) = app(&[
            ("pyproject.toml", "[project]\nname='x'\n"),
            ("uv.lock", "version = 1\n"),
        ]);
        assert_eq!(analyze(&a, None).unwrap().unwrap().manager, Manager::Uv);
        let (_d, a) = app(&[
            ("pyproject.toml", "[project]\nname='x'\n"),
            ("uv.lock", ""),
            ("requirements.txt", ""),
        ]);
        let err = analyze(&a, None).unwrap_err().to_string();
        assert!(err.contains("requirements.txt and uv.lock"), "{err}");
        assert_eq!(
            analyze(&a, Some("uv")).unwrap().unwrap().manager,
            Manager::Uv
        );
        assert!(analyze(&a, Some("conda")).is_err());
        let (_d, a) = app(&[("uv.lock", "")]);
        assert!(
            analyze(&a, None)
                .unwrap_err()
                .to_string()
                .contains("pyproject.toml")
        );
        let (_d, a) = app(&[("README.md", "")]);
        assert_eq!(analyze(&a, None).unwrap(), None);
        let (_d, a) = app(&[("main.py", "print(1)\n")]);
        let p = analyze(&a, None).unwrap().unwrap();
        assert_eq!(
            (p.manager, p.command.unwrap()),
            (Manager::None, words(&["python3", "main.py"]))
        );
    }

    #[test]
    fn start_commands() {
        let (_d, a) = app(&[
            ("requirements.txt", "flask\ngunicorn\n"),
            ("app.py", "from flask import Flask\napp = Flask(__name__)\n"),
        ]);
        let p = analyze(&a, None).unwrap().unwrap();
        assert_eq!(
            p.command.unwrap(),
            words(&["python3", "-m", "gunicorn", "app:app"])
        );

        let (_d, a) = app(&[
            ("requirements.txt", "fastapi\nuvicorn[standard]\n"),
            (
                "main.py",
                "from fastapi import FastAPI\napp: FastAPI = FastAPI()\n",
            ),
        ]);
        let p = analyze(&a, None).unwrap().unwrap();
        assert!(p.command.unwrap()[2].contains("uvicorn main:app --host 0.0.0.0"));

        let (_d, a) = app(&[
            ("requirements.txt", "Django\ngunicorn\n"),
            (
                "manage.py",
                "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"mysite.settings\")\n",
            ),
        ]);
        let p = analyze(&a, None).unwrap().unwrap();
        assert_eq!(
            p.command.unwrap(),
            words(&["python3", "-m", "gunicorn", "mysite.wsgi"])
        );

        let (_d, a) = app(&[
            ("requirements.txt", "flask\ngunicorn\n"),
            ("app.py", "def create_app():\n    pass\n"),
        ]);
        let p = analyze(&a, None).unwrap().unwrap();
        assert_eq!(
            p.command.unwrap(),
            words(&["python3", "-m", "gunicorn", "app:create_app()"])
        );

        let (_d, a) = app(&[("requirements.txt", "requests\n")]);
        assert_eq!(analyze(&a, None).unwrap().unwrap().command, None);
    }

    #[test]
    fn poetry_projects_without_their_package_install_dependencies_only() {
        let pyproject = "[tool.poetry]\nname = \"support-bot\"\nversion = \"0.1.0\"\n\n[build-system]\nrequires = [\"poetry-core\"]\nbuild-backend = \"poetry.core.masonry.api\"\n";
        let (_d, a) = app(&[
            ("pyproject.toml", pyproject),
            ("poetry.lock", ""),
            ("bot.py", ""),
        ]);
        let p = analyze(&a, None).unwrap().unwrap();
        assert!(!p.install_app);
        let why = p.install_skipped.unwrap();
        assert!(why.contains("no support_bot/, src/support_bot/"), "{why}");
        for layout in [
            "support_bot/__init__.py",
            "src/support_bot/__init__.py",
            "support_bot.py",
        ] {
            let (_d, a) = app(&[
                ("pyproject.toml", pyproject),
                ("poetry.lock", ""),
                (layout, ""),
            ]);
            let p = analyze(&a, None).unwrap().unwrap();
            assert!(p.install_app, "{layout}");
            assert_eq!(p.install_skipped, None);
        }
        let listed = pyproject.replace(
            "[build-system]",
            "packages = [{ include = \"bot\" }]\n\n[build-system]",
        );
        let (_d, a) = app(&[("pyproject.toml", &listed), ("poetry.lock", "")]);
        assert!(analyze(&a, None).unwrap().unwrap().install_app);
    }

    #[test]
    fn django_settings_module() {
        assert_eq!(
            django_project("os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')"),
            Some("shop".into())
        );
        assert_eq!(django_project("nothing"), None);
    }
}
