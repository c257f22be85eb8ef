"""German and French for the account-security pages (merged into webportal.i18n.CATALOGS)."""

from __future__ import annotations

DE: dict[str, str] = {
    "Account": "Konto",
    "Account created": "Konto angelegt",
    "Account password changed": "Kontopasswort geändert",
    "Address": "Adresse",
    "Address added": "Adresse hinzugefügt",
    "Address password changed": "Adresspasswort geändert",
    "Alert mails": "Warn-E-Mails",
    "Alert settings changed": "Einstellungen der Warnungen geändert",
    "All app passwords revoked": "Alle App-Passwörter widerrufen",
    "All app passwords were revoked.": "Alle App-Passwörter wurden widerrufen.",
    "All other sessions ended": "Alle anderen Sitzungen beendet",
    "All other sessions were ended.": "Alle anderen Sitzungen wurden beendet.",
    "An account can have at most {count} app passwords; revoke the ones you no longer use.": (
        "Ein Konto kann höchstens {count} App-Passwörter haben; widerrufen Sie die, die Sie"
        " nicht mehr verwenden."
    ),
    "App password created": "App-Passwort erstellt",
    "App password revoked": "App-Passwort widerrufen",
    "App passwords": "App-Passwörter",
    "Browser": "Browser",
    "Cannot scan it? Enter this key in the app instead:": (
        "Scannen geht nicht? Geben Sie stattdessen diesen Schlüssel in der App ein:"
    ),
    "Change an address password": "Adresspasswort ändern",
    "Change password": "Passwort ändern",
    "Change the account password": "Kontopasswort ändern",
    "Change the passwords of your addresses": "Ändern Sie die Passwörter Ihrer Adressen",
    "Choose one of your addresses.": "Wählen Sie eine Ihrer Adressen.",
    "Code": "Code",
    "Confirm your password": "Passwort bestätigen",
    "Continue": "Weiter",
    "Create": "Erstellen",
    "Create an app password": "App-Passwort erstellen",
    "Created": "Erstellt",
    "Current password": "Aktuelles Passwort",
    "Device": "Gerät",
    "Did you change it because someone else may know it?": (
        "Haben Sie es geändert, weil jemand anderes es kennen könnte?"
    ),
    "Each address has its own password, which mail programs use to send.": (
        "Jede Adresse hat ein eigenes Passwort, mit dem E-Mail-Programme senden."
    ),
    "Encryption key created": "Verschlüsselungsschlüssel erstellt",
    "Encryption key replaced": "Verschlüsselungsschlüssel ersetzt",
    "Encryption key revoked": "Verschlüsselungsschlüssel widerrufen",
    "End": "Beenden",
    "End all other sessions": "Alle anderen Sitzungen beenden",
    "End every other session, so nobody stays signed in with the old password."
    " Other sessions now: {count}.": (
        "Beenden Sie alle anderen Sitzungen, damit niemand mit dem alten Passwort angemeldet"
        " bleibt. Andere Sitzungen jetzt: {count}."
    ),
    "End this session": "Diese Sitzung beenden",
    "Enter it in the mail program as its password (with or without the spaces)."
    " It is shown only this once.": (
        "Geben Sie es im E-Mail-Programm als Passwort ein (mit oder ohne Leerzeichen)."
        " Es wird nur dieses eine Mal angezeigt."
    ),
    "Enter the 6-digit code from your authenticator app, or one of your recovery codes.": (
        "Geben Sie den 6-stelligen Code aus Ihrer Authenticator-App oder einen Ihrer"
        " Wiederherstellungscodes ein."
    ),
    "Enter the 6-digit code the app shows:": (
        "Geben Sie den 6-stelligen Code ein, den die App zeigt:"
    ),
    "Event": "Ereignis",
    "Every browser that is signed in to your account. End any you do not recognise."
    " Times are UTC.": (
        "Alle Browser, die bei Ihrem Konto angemeldet sind. Beenden Sie jede Sitzung, die Sie"
        " nicht kennen. Zeiten in UTC."
    ),
    "Give the app password a name of at most {count} characters, such as the mail program's.": (
        "Geben Sie dem App-Passwort einen Namen mit höchstens {count} Zeichen, zum Beispiel"
        " den des E-Mail-Programms."
    ),
    "I have stored the codes": "Ich habe die Codes gespeichert",
    "IP address": "IP-Adresse",
    "If you lose your phone, each of these codes lets you sign in once instead of a code"
    " from the app. Print them or store them somewhere safe now: they are shown only this"
    " once.": (
        "Wenn Sie Ihr Telefon verlieren, können Sie sich mit jedem dieser Codes einmal"
        " anstelle eines Codes aus der App anmelden. Drucken Sie sie aus oder bewahren Sie sie"
        " jetzt sicher auf: Sie werden nur dieses eine Mal angezeigt."
    ),
    "Last activity": "Letzte Aktivität",
    "Last used": "Zuletzt verwendet",
    "Look at the recent activity for anything you did not do": (
        "Prüfen Sie die letzten Aktivitäten auf alles, was Sie nicht selbst getan haben"
    ),
    "Mail me when someone enters a wrong password for my account": (
        "Mich per E-Mail warnen, wenn jemand ein falsches Passwort für mein Konto eingibt"
    ),
    "Mail me when someone signs in from a new device or place": (
        "Mich per E-Mail warnen, wenn sich jemand von einem neuen Gerät oder Ort anmeldet"
    ),
    "Mail program sign-in": "Anmeldung eines E-Mail-Programms",
    "Mail program sign-in with the app password “{name}”": (
        "Anmeldung eines E-Mail-Programms mit dem App-Passwort „{name}“"
    ),
    "Mail programs can sign in with an app password instead of the address password."
    " Once two-factor login is on, they must.": (
        "E-Mail-Programme können sich mit einem App-Passwort statt mit dem Adresspasswort"
        " anmelden. Sobald die Zwei-Faktor-Anmeldung aktiv ist, müssen sie das."
    ),
    "Mail programs now need app passwords: address passwords no longer work for sending.": (
        "E-Mail-Programme brauchen jetzt App-Passwörter: Adresspasswörter funktionieren zum"
        " Senden nicht mehr."
    ),
    "Mail programs on your devices can use their own app password, which you can revoke"
    " on its own.": (
        "E-Mail-Programme auf Ihren Geräten können jeweils ein eigenes App-Passwort verwenden,"
        " das Sie einzeln widerrufen können."
    ),
    "Make new recovery codes": "Neue Wiederherstellungscodes erstellen",
    "Manage app passwords": "App-Passwörter verwalten",
    "Name": "Name",
    "Name (for example, the mail program and device)": (
        "Name (zum Beispiel E-Mail-Programm und Gerät)"
    ),
    "New address password": "Neues Adresspasswort",
    "New address password again": "Neues Adresspasswort wiederholen",
    "New app password for “{name}”": "Neues App-Passwort für „{name}“",
    "New password": "Neues Passwort",
    "New password again": "Neues Passwort wiederholen",
    "New recovery codes made": "Neue Wiederherstellungscodes erstellt",
    "No activity yet.": "Noch keine Aktivitäten.",
    "No app passwords yet.": "Noch keine App-Passwörter.",
    "Off.": "Aus.",
    "On since {date}.": "Aktiv seit {date}.",
    "Open an authenticator app on your phone (any app for one-time codes, TOTP) and scan"
    " this code:": (
        "Öffnen Sie eine Authenticator-App auf Ihrem Telefon (jede App für Einmalcodes, TOTP)"
        " und scannen Sie diesen Code:"
    ),
    "Password accepted, second factor asked": "Passwort richtig, zweiter Faktor angefordert",
    "Password changed": "Passwort geändert",
    "Password confirmed": "Passwort bestätigt",
    "Passwords": "Passwörter",
    "QR code for your authenticator app": "QR-Code für Ihre Authenticator-App",
    "Recent activity": "Letzte Aktivitäten",
    "Recovery code used": "Wiederherstellungscode verwendet",
    "Recovery codes": "Wiederherstellungscodes",
    "Recovery codes left: {count}": "Verbleibende Wiederherstellungscodes: {count}",
    "Result": "Ergebnis",
    "Revoke": "Widerrufen",
    "Revoke all app passwords": "Alle App-Passwörter widerrufen",
    "Revoke all app passwords and create new ones for your mail programs."
    " App passwords now: {count}.": (
        "Widerrufen Sie alle App-Passwörter und erstellen Sie neue für Ihre E-Mail-Programme."
        " App-Passwörter jetzt: {count}."
    ),
    "Save": "Speichern",
    "Security": "Sicherheit",
    "Session ended": "Sitzung beendet",
    "Sessions": "Sitzungen",
    "Sign-in": "Anmeldung",
    "Sign-in failed: wrong password": "Anmeldung fehlgeschlagen: falsches Passwort",
    "Sign-in failed: wrong two-factor code": "Anmeldung fehlgeschlagen: falscher Zwei-Faktor-Code",
    "Sign-in name changed by an administrator": "Anmeldename von einem Administrator geändert",
    "Sign-in refused: too many failed attempts": "Anmeldung abgewiesen: zu viele Fehlversuche",
    "Sign-in unlocked by an administrator": "Anmeldung von einem Administrator entsperrt",
    "Sign-ins, password and two-factor changes, app-password use and key events of the last"
    " {days} days. Times are UTC.": (
        "Anmeldungen, Passwort- und Zwei-Faktor-Änderungen, Verwendung von App-Passwörtern und"
        " Schlüsselereignisse der letzten {days} Tage. Zeiten in UTC."
    ),
    "Sign-out": "Abmeldung",
    "Signed in": "Angemeldet",
    "Signing in needs your password and a code from your authenticator app. Mail programs"
    " sign in with app passwords.": (
        "Zum Anmelden brauchen Sie Ihr Passwort und einen Code aus Ihrer Authenticator-App."
        " E-Mail-Programme melden sich mit App-Passwörtern an."
    ),
    "That session had already ended.": "Diese Sitzung war bereits beendet.",
    "The address password was changed. Enter it in your mail programs.": (
        "Das Adresspasswort wurde geändert. Geben Sie es in Ihren E-Mail-Programmen ein."
    ),
    "The app password was revoked.": "Das App-Passwort wurde widerrufen.",
    "The code is wrong or was already used.": "Der Code ist falsch oder wurde schon verwendet.",
    "The new password is too long.": "Das neue Passwort ist zu lang.",
    "The new password must have at least {count} characters.": (
        "Das neue Passwort muss mindestens {count} Zeichen haben."
    ),
    "The password is wrong.": "Das Passwort ist falsch.",
    "The session was ended.": "Die Sitzung wurde beendet.",
    "The sign-in took too long. Please enter your password again.": (
        "Die Anmeldung hat zu lange gedauert. Bitte geben Sie Ihr Passwort erneut ein."
    ),
    "The two new passwords are not the same.": "Die beiden neuen Passwörter stimmen nicht überein.",
    "Then also do this:": "Dann tun Sie auch Folgendes:",
    "There is no such app password.": "Dieses App-Passwort gibt es nicht.",
    "This page changes how you sign in. Please enter your password again to continue.": (
        "Diese Seite ändert, wie Sie sich anmelden. Bitte geben Sie Ihr Passwort erneut ein,"
        " um fortzufahren."
    ),
    "Time": "Zeit",
    "Too many failed sign-ins: sign-in to this account is paused for a while."
    " Try again later or ask your administrator.": (
        "Zu viele fehlgeschlagene Anmeldungen: Die Anmeldung bei diesem Konto ist für eine"
        " Weile gesperrt. Versuchen Sie es später noch einmal oder wenden Sie sich an Ihren"
        " Administrator."
    ),
    "Turn off two-factor login": "Zwei-Faktor-Anmeldung ausschalten",
    "Turn on": "Einschalten",
    "Turn on two-factor login": "Zwei-Faktor-Anmeldung einschalten",
    "Two-factor login": "Zwei-Faktor-Anmeldung",
    "Two-factor login is already on.": "Die Zwei-Faktor-Anmeldung ist bereits aktiv.",
    "Two-factor login is off. Mail programs can use address passwords again.": (
        "Die Zwei-Faktor-Anmeldung ist aus. E-Mail-Programme können wieder Adresspasswörter"
        " verwenden."
    ),
    "Two-factor login is on, so mail programs can only sign in with an app password.": (
        "Die Zwei-Faktor-Anmeldung ist aktiv, daher können sich E-Mail-Programme nur mit einem"
        " App-Passwort anmelden."
    ),
    "Two-factor login is on.": "Die Zwei-Faktor-Anmeldung ist aktiv.",
    "Two-factor login turned off": "Zwei-Faktor-Anmeldung ausgeschaltet",
    "Two-factor login turned on": "Zwei-Faktor-Anmeldung eingeschaltet",
    "While two-factor login is on, mail programs use app passwords instead.": (
        "Solange die Zwei-Faktor-Anmeldung aktiv ist, verwenden E-Mail-Programme stattdessen"
        " App-Passwörter."
    ),
    "With two-factor login, a stolen password alone no longer opens your account: signing"
    " in also needs a code from an app on your phone.": (
        "Mit der Zwei-Faktor-Anmeldung öffnet ein gestohlenes Passwort allein Ihr Konto nicht"
        " mehr: Zum Anmelden braucht es zusätzlich einen Code aus einer App auf Ihrem Telefon."
    ),
    "Without two-factor login, your password alone opens your account. To turn it off,"
    " enter your password and a current code (or a recovery code).": (
        "Ohne Zwei-Faktor-Anmeldung öffnet Ihr Passwort allein Ihr Konto. Zum Ausschalten geben"
        " Sie Ihr Passwort und einen aktuellen Code (oder einen Wiederherstellungscode) ein."
    ),
    "You have {count}.": "Sie haben {count}.",
    "You signed in with a recovery code. Each code works once: make new ones in the"
    " security settings before they run out.": (
        "Sie haben sich mit einem Wiederherstellungscode angemeldet. Jeder Code funktioniert"
        " nur einmal: Erstellen Sie in den Sicherheitseinstellungen neue, bevor sie ausgehen."
    ),
    "Your account password": "Ihr Kontopasswort",
    "Your account password was changed.": "Ihr Kontopasswort wurde geändert.",
    "Your alert settings were saved.": "Ihre Einstellungen für Warnungen wurden gespeichert.",
    "Your other sessions were signed out: {count}. Sign in there again with a code.": (
        "Ihre anderen Sitzungen wurden abgemeldet: {count}. Melden Sie sich dort mit einem"
        " Code wieder an."
    ),
    "Your two-factor set-up had expired. Scan the new code below and enter a code from it.": (
        "Ihre Einrichtung der Zwei-Faktor-Anmeldung war abgelaufen. Scannen Sie den neuen Code"
        " unten und geben Sie einen Code daraus ein."
    ),
    "failed": "fehlgeschlagen",
    "never": "nie",
    "succeeded": "erfolgreich",
    "this session": "diese Sitzung",
}

FR: dict[str, str] = {
    "Account": "Compte",
    "Account created": "Compte créé",
    "Account password changed": "Mot de passe du compte modifié",
    "Address": "Adresse",
    "Address added": "Adresse ajoutée",
    "Address password changed": "Mot de passe d'adresse modifié",
    "Alert mails": "E-mails d'alerte",
    "Alert settings changed": "Réglages des alertes modifiés",
    "All app passwords revoked": "Tous les mots de passe d'application révoqués",
    "All app passwords were revoked.": "Tous les mots de passe d'application ont été révoqués.",
    "All other sessions ended": "Toutes les autres sessions fermées",
    "All other sessions were ended.": "Toutes les autres sessions ont été fermées.",
    "An account can have at most {count} app passwords; revoke the ones you no longer use.": (
        "Un compte peut avoir au plus {count} mots de passe d'application ; révoquez ceux que"
        " vous n'utilisez plus."
    ),
    "App password created": "Mot de passe d'application créé",
    "App password revoked": "Mot de passe d'application révoqué",
    "App passwords": "Mots de passe d'application",
    "Browser": "Navigateur",
    "Cannot scan it? Enter this key in the app instead:": (
        "Impossible de le scanner ? Saisissez plutôt cette clé dans l'application :"
    ),
    "Change an address password": "Changer le mot de passe d'une adresse",
    "Change password": "Changer le mot de passe",
    "Change the account password": "Changer le mot de passe du compte",
    "Change the passwords of your addresses": "Changez les mots de passe de vos adresses",
    "Choose one of your addresses.": "Choisissez l'une de vos adresses.",
    "Code": "Code",
    "Confirm your password": "Confirmez votre mot de passe",
    "Continue": "Continuer",
    "Create": "Créer",
    "Create an app password": "Créer un mot de passe d'application",
    "Created": "Créé",
    "Current password": "Mot de passe actuel",
    "Device": "Appareil",
    "Did you change it because someone else may know it?": (
        "L'avez-vous changé parce que quelqu'un d'autre pourrait le connaître ?"
    ),
    "Each address has its own password, which mail programs use to send.": (
        "Chaque adresse a son propre mot de passe, que les logiciels de messagerie utilisent"
        " pour envoyer."
    ),
    "Encryption key created": "Clé de chiffrement créée",
    "Encryption key replaced": "Clé de chiffrement remplacée",
    "Encryption key revoked": "Clé de chiffrement révoquée",
    "End": "Fermer",
    "End all other sessions": "Fermer toutes les autres sessions",
    "End every other session, so nobody stays signed in with the old password."
    " Other sessions now: {count}.": (
        "Fermez toutes les autres sessions, pour que personne ne reste connecté avec l'ancien"
        " mot de passe. Autres sessions actuellement : {count}."
    ),
    "End this session": "Fermer cette session",
    "Enter it in the mail program as its password (with or without the spaces)."
    " It is shown only this once.": (
        "Saisissez-le comme mot de passe dans le logiciel de messagerie (avec ou sans les"
        " espaces). Il n'est affiché que cette fois."
    ),
    "Enter the 6-digit code from your authenticator app, or one of your recovery codes.": (
        "Saisissez le code à 6 chiffres de votre application d'authentification, ou l'un de"
        " vos codes de récupération."
    ),
    "Enter the 6-digit code the app shows:": (
        "Saisissez le code à 6 chiffres affiché par l'application :"
    ),
    "Event": "Événement",
    "Every browser that is signed in to your account. End any you do not recognise."
    " Times are UTC.": (
        "Tous les navigateurs connectés à votre compte. Fermez celles que vous ne reconnaissez"
        " pas. Heures en UTC."
    ),
    "Give the app password a name of at most {count} characters, such as the mail program's.": (
        "Donnez au mot de passe d'application un nom d'au plus {count} caractères, par exemple"
        " celui du logiciel de messagerie."
    ),
    "I have stored the codes": "J'ai conservé les codes",
    "IP address": "Adresse IP",
    "If you lose your phone, each of these codes lets you sign in once instead of a code"
    " from the app. Print them or store them somewhere safe now: they are shown only this"
    " once.": (
        "Si vous perdez votre téléphone, chacun de ces codes vous permet de vous connecter une"
        " fois à la place d'un code de l'application. Imprimez-les ou conservez-les en lieu sûr"
        " dès maintenant : ils ne sont affichés que cette fois."
    ),
    "Last activity": "Dernière activité",
    "Last used": "Dernière utilisation",
    "Look at the recent activity for anything you did not do": (
        "Vérifiez dans l'activité récente ce que vous n'avez pas fait vous-même"
    ),
    "Mail me when someone enters a wrong password for my account": (
        "M'avertir par e-mail quand quelqu'un saisit un mauvais mot de passe pour mon compte"
    ),
    "Mail me when someone signs in from a new device or place": (
        "M'avertir par e-mail quand quelqu'un se connecte depuis un nouvel appareil ou lieu"
    ),
    "Mail program sign-in": "Connexion d'un logiciel de messagerie",
    "Mail program sign-in with the app password “{name}”": (
        "Connexion d'un logiciel de messagerie avec le mot de passe d'application « {name} »"
    ),
    "Mail programs can sign in with an app password instead of the address password."
    " Once two-factor login is on, they must.": (
        "Les logiciels de messagerie peuvent se connecter avec un mot de passe d'application"
        " au lieu du mot de passe de l'adresse. Une fois la connexion à deux facteurs activée,"
        " ils le doivent."
    ),
    "Mail programs now need app passwords: address passwords no longer work for sending.": (
        "Les logiciels de messagerie ont désormais besoin de mots de passe d'application : les"
        " mots de passe d'adresse ne permettent plus d'envoyer."
    ),
    "Mail programs on your devices can use their own app password, which you can revoke"
    " on its own.": (
        "Les logiciels de messagerie de vos appareils peuvent chacun utiliser leur propre mot"
        " de passe d'application, que vous pouvez révoquer séparément."
    ),
    "Make new recovery codes": "Créer de nouveaux codes de récupération",
    "Manage app passwords": "Gérer les mots de passe d'application",
    "Name": "Nom",
    "Name (for example, the mail program and device)": (
        "Nom (par exemple le logiciel de messagerie et l'appareil)"
    ),
    "New address password": "Nouveau mot de passe de l'adresse",
    "New address password again": "Confirmez le nouveau mot de passe de l'adresse",
    "New app password for “{name}”": "Nouveau mot de passe d'application pour « {name} »",
    "New password": "Nouveau mot de passe",
    "New password again": "Confirmez le nouveau mot de passe",
    "New recovery codes made": "Nouveaux codes de récupération créés",
    "No activity yet.": "Aucune activité pour l'instant.",
    "No app passwords yet.": "Aucun mot de passe d'application pour l'instant.",
    "Off.": "Désactivée.",
    "On since {date}.": "Activée depuis le {date}.",
    "Open an authenticator app on your phone (any app for one-time codes, TOTP) and scan"
    " this code:": (
        "Ouvrez une application d'authentification sur votre téléphone (toute application de"
        " codes à usage unique, TOTP) et scannez ce code :"
    ),
    "Password accepted, second factor asked": "Mot de passe accepté, second facteur demandé",
    "Password changed": "Mot de passe modifié",
    "Password confirmed": "Mot de passe confirmé",
    "Passwords": "Mots de passe",
    "QR code for your authenticator app": "Code QR pour votre application d'authentification",
    "Recent activity": "Activité récente",
    "Recovery code used": "Code de récupération utilisé",
    "Recovery codes": "Codes de récupération",
    "Recovery codes left: {count}": "Codes de récupération restants : {count}",
    "Result": "Résultat",
    "Revoke": "Révoquer",
    "Revoke all app passwords": "Révoquer tous les mots de passe d'application",
    "Revoke all app passwords and create new ones for your mail programs."
    " App passwords now: {count}.": (
        "Révoquez tous les mots de passe d'application et créez-en de nouveaux pour vos"
        " logiciels de messagerie. Mots de passe d'application actuellement : {count}."
    ),
    "Save": "Enregistrer",
    "Security": "Sécurité",
    "Session ended": "Session fermée",
    "Sessions": "Sessions",
    "Sign-in": "Connexion",
    "Sign-in failed: wrong password": "Échec de connexion : mauvais mot de passe",
    "Sign-in failed: wrong two-factor code": "Échec de connexion : mauvais code à deux facteurs",
    "Sign-in name changed by an administrator": (
        "Identifiant de connexion modifié par un administrateur"
    ),
    "Sign-in refused: too many failed attempts": "Connexion refusée : trop de tentatives échouées",
    "Sign-in unlocked by an administrator": "Connexion débloquée par un administrateur",
    "Sign-ins, password and two-factor changes, app-password use and key events of the last"
    " {days} days. Times are UTC.": (
        "Connexions, changements de mot de passe et de connexion à deux facteurs, utilisation"
        " des mots de passe d'application et événements de clés des {days} derniers jours."
        " Heures en UTC."
    ),
    "Sign-out": "Déconnexion",
    "Signed in": "Connecté",
    "Signing in needs your password and a code from your authenticator app. Mail programs"
    " sign in with app passwords.": (
        "La connexion demande votre mot de passe et un code de votre application"
        " d'authentification. Les logiciels de messagerie se connectent avec des mots de passe"
        " d'application."
    ),
    "That session had already ended.": "Cette session était déjà fermée.",
    "The address password was changed. Enter it in your mail programs.": (
        "Le mot de passe de l'adresse a été modifié. Saisissez-le dans vos logiciels de messagerie."
    ),
    "The app password was revoked.": "Le mot de passe d'application a été révoqué.",
    "The code is wrong or was already used.": "Le code est incorrect ou a déjà été utilisé.",
    "The new password is too long.": "Le nouveau mot de passe est trop long.",
    "The new password must have at least {count} characters.": (
        "Le nouveau mot de passe doit comporter au moins {count} caractères."
    ),
    "The password is wrong.": "Le mot de passe est incorrect.",
    "The session was ended.": "La session a été fermée.",
    "The sign-in took too long. Please enter your password again.": (
        "La connexion a pris trop de temps. Veuillez saisir à nouveau votre mot de passe."
    ),
    "The two new passwords are not the same.": (
        "Les deux nouveaux mots de passe ne sont pas identiques."
    ),
    "Then also do this:": "Faites alors aussi ceci :",
    "There is no such app password.": "Ce mot de passe d'application n'existe pas.",
    "This page changes how you sign in. Please enter your password again to continue.": (
        "Cette page modifie votre façon de vous connecter. Veuillez saisir à nouveau votre mot"
        " de passe pour continuer."
    ),
    "Time": "Heure",
    "Too many failed sign-ins: sign-in to this account is paused for a while."
    " Try again later or ask your administrator.": (
        "Trop de connexions échouées : la connexion à ce compte est suspendue pour un moment."
        " Réessayez plus tard ou adressez-vous à votre administrateur."
    ),
    "Turn off two-factor login": "Désactiver la connexion à deux facteurs",
    "Turn on": "Activer",
    "Turn on two-factor login": "Activer la connexion à deux facteurs",
    "Two-factor login": "Connexion à deux facteurs",
    "Two-factor login is already on.": "La connexion à deux facteurs est déjà activée.",
    "Two-factor login is off. Mail programs can use address passwords again.": (
        "La connexion à deux facteurs est désactivée. Les logiciels de messagerie peuvent à"
        " nouveau utiliser les mots de passe d'adresse."
    ),
    "Two-factor login is on, so mail programs can only sign in with an app password.": (
        "La connexion à deux facteurs est activée : les logiciels de messagerie ne peuvent se"
        " connecter qu'avec un mot de passe d'application."
    ),
    "Two-factor login is on.": "La connexion à deux facteurs est activée.",
    "Two-factor login turned off": "Connexion à deux facteurs désactivée",
    "Two-factor login turned on": "Connexion à deux facteurs activée",
    "While two-factor login is on, mail programs use app passwords instead.": (
        "Tant que la connexion à deux facteurs est activée, les logiciels de messagerie"
        " utilisent plutôt des mots de passe d'application."
    ),
    "With two-factor login, a stolen password alone no longer opens your account: signing"
    " in also needs a code from an app on your phone.": (
        "Avec la connexion à deux facteurs, un mot de passe volé ne suffit plus à ouvrir votre"
        " compte : la connexion demande aussi un code d'une application sur votre téléphone."
    ),
    "Without two-factor login, your password alone opens your account. To turn it off,"
    " enter your password and a current code (or a recovery code).": (
        "Sans connexion à deux facteurs, votre mot de passe seul ouvre votre compte. Pour la"
        " désactiver, saisissez votre mot de passe et un code actuel (ou un code de"
        " récupération)."
    ),
    "You have {count}.": "Vous en avez {count}.",
    "You signed in with a recovery code. Each code works once: make new ones in the"
    " security settings before they run out.": (
        "Vous vous êtes connecté avec un code de récupération. Chaque code ne fonctionne"
        " qu'une fois : créez-en de nouveaux dans les paramètres de sécurité avant d'en"
        " manquer."
    ),
    "Your account password": "Le mot de passe de votre compte",
    "Your account password was changed.": "Le mot de passe de votre compte a été modifié.",
    "Your alert settings were saved.": "Vos réglages d'alerte ont été enregistrés.",
    "Your other sessions were signed out: {count}. Sign in there again with a code.": (
        "Vos autres sessions ont été déconnectées : {count}. Reconnectez-vous-y avec un code."
    ),
    "Your two-factor set-up had expired. Scan the new code below and enter a code from it.": (
        "Votre configuration de la connexion à deux facteurs avait expiré. Scannez le nouveau"
        " code ci-dessous et saisissez un code qu'il affiche."
    ),
    "failed": "échec",
    "never": "jamais",
    "succeeded": "réussi",
    "this session": "cette session",
}
